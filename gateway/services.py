"""The domain services, configured from settings, for everything that changes data.

One ``Services`` per process (the app's, the CLI's): USSD hops, SMS keywords and, later,
the APIs and the clerks' console apply their effects through it, inside their own unit
of work. A feature that brings effects registers their handlers here.
"""

from __future__ import annotations

from gateway.outbox import Outbox
from gateway.phones import phone_key
from gateway.settings import Settings
from models.unit_of_work import Services


def build_services(settings: Settings, outbox: Outbox) -> Services:
    secret = settings.security.secret_key
    services = Services(outbox.writer, lambda phone: phone_key(phone, secret), on_sms_queued=outbox.wakeup.set)
    services.check()
    return services
