"""Prometheus metrics of one app: its own registry, so two apps in one process (tests) or
several workers never share hidden global state. Each worker exposes its own /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ussd_hops = Counter(
            "gateway_ussd_hops", "USSD hops answered", ["channel", "screen", "end", "retry"], registry=self.registry
        )
        self.ussd_errors = Counter("gateway_ussd_errors", "USSD hops that failed inside", ["channel"], registry=self.registry)
        self.ussd_latency = Histogram(
            "gateway_ussd_hop_seconds",
            "Time to answer a USSD hop",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.sms_sent = Counter(
            "gateway_sms_send_attempts", "SMS handed to a transport, by outcome", ["transport", "outcome"],
            registry=self.registry,
        )
        self.sms_parts = Counter(
            "gateway_sms_parts_sent", "SMS parts accepted by the provider (what operators bill)", ["transport"],
            registry=self.registry,
        )
