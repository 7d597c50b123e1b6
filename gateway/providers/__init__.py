"""Provider adapters: one module per wire format, translating to ``gateway.messages`` /
``gateway.sms`` and back. This package is the only place that knows providers' names."""

from __future__ import annotations

from types import ModuleType

from gateway.settings import Settings
from gateway.sms import SmsSink, SmsTransport


def ussd_adapter(contract: str) -> ModuleType | None:
    """The module that speaks ``/ussd/{contract}``: ``parse_ussd(body)`` and ``render_ussd(reply)``."""
    if contract == "at":
        from gateway.providers import africastalking

        return africastalking
    if contract == "json":
        from gateway.providers import generic_json

        return generic_json
    return None


def inbound_adapter(name: str) -> ModuleType | None:
    """The module that parses ``/sms/{name}/inbound`` and ``/sms/{name}/dlr`` webhooks."""
    if name == "kannel":
        from gateway.providers import kannel

        return kannel
    if name == "http":
        from gateway.providers import http_aggregator

        return http_aggregator
    if name == "json":
        from gateway.providers import generic_json

        return generic_json
    return None


def build_transport(settings: Settings, sink: SmsSink) -> SmsTransport:
    """The outbound transport named by ``sms.transport``."""
    name = settings.sms.transport
    if name == "console":
        from gateway.providers.console import ConsoleTransport

        return ConsoleTransport()
    if name == "kannel":
        from gateway.providers.kannel import KannelTransport

        return KannelTransport(settings.kannel, settings.sms.public_base_url, settings.security.webhook_token)
    if name == "http":
        from gateway.providers.http_aggregator import HttpAggregatorTransport

        return HttpAggregatorTransport(settings.http_sms, concurrency=settings.sms.dispatch_concurrency)
    if name == "smpp":
        from gateway.providers.smpp import SmppTransport

        return SmppTransport(settings.smpp, sink)
    raise ValueError(f"unknown SMS transport {name!r}")
