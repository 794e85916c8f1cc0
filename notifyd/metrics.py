"""Prometheus metrics of one notifyd process (its own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.open_sockets = Gauge("notifyd_open_sockets", "WebSocket sessions open now", registry=self.registry)
        self.events_sent = Counter(
            "notifyd_events_sent", "events sent to WebSocket sessions, by type", ["type"], registry=self.registry
        )
        self.listen_reconnects = Counter(
            "notifyd_listen_reconnects", "times the LISTEN connection was re-made", registry=self.registry
        )
        self.catch_up_lag = Histogram(
            "notifyd_catch_up_lag_seconds",
            "from a notification's change to its read by the fan-out",
            registry=self.registry,
        )
        self.slow_clients_closed = Counter(
            "notifyd_slow_clients_closed", "sessions closed because their send queue was full", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
