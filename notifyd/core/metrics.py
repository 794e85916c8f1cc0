"""Prometheus metrics of one notifyd process (its own registry, so several apps can share a process)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

# The error kinds a provider's circuit counts (notify_private.provider_circuits' counter columns).
ERROR_KINDS = ("timeouts", "server_errors")


class ProviderCircuits(Collector):
    """The providers' circuit breakers as the database keeps them for every process: a gauge (1 open or
    half-open, 0 closed) and their error counters, which only grow (a counter read, not counted here)."""

    def __init__(self) -> None:
        self.rows: list[Mapping[str, Any]] = []

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "notifyd_provider_circuit_open",
            "1 while the provider's circuit is open (new e-mail goes to the other provider), 0 while closed",
            labels=["provider"],
        )
        errors = CounterMetricFamily(
            "notifyd_provider_errors", "provider timeouts and 5xx answers, by kind", labels=["provider", "kind"]
        )
        for row in self.rows:
            state.add_metric([row["provider"]], 0 if row["state"] == "closed" else 1)
            for kind in ERROR_KINDS:
                errors.add_metric([row["provider"], kind.removesuffix("s")], row[kind])
        yield state
        yield errors


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
        self.commit_to_socket = Histogram(
            "notifyd_commit_to_socket_seconds",
            "from a live notification's commit to its frame written to each session's WebSocket or SSE stream",
            registry=self.registry,
        )
        self.slow_clients_closed = Counter(
            "notifyd_slow_clients_closed", "sessions closed because their send queue was full", registry=self.registry
        )
        self.replica_up = Gauge(
            "notifyd_replica_up",
            "1 while read replica N (DATABASE_REPLICA_URL order, from 0) takes reads; 0 while they go to the primary",
            ["replica"],
            registry=self.registry,
        )
        self.lag_tolerant_reads = Counter(
            "notifyd_lag_tolerant_reads",
            "reads that may run on a replica, by the database that ran them (primary or replica)",
            ["database"],
            registry=self.registry,
        )

        # Read from the database at each scrape: every process shows the same figures, workers' included.
        self.deliveries = Gauge(
            "notifyd_deliveries", "deliveries in the ledger", ["channel", "provider", "status"], registry=self.registry
        )
        self.delivery_repeats = Gauge(
            "notifyd_delivery_repeats",
            "attempts after an unrecorded answer (the provider may have got the delivery twice)",
            ["channel", "provider"],
            registry=self.registry,
        )
        self.queue_jobs = Gauge("notifyd_queue_jobs", "Procrastinate jobs", ["queue", "status"], registry=self.registry)
        self.provider_circuits = ProviderCircuits()
        self.registry.register(self.provider_circuits)
        self.queue_oldest = Gauge(
            "notifyd_queue_oldest_job_seconds",
            "age of the oldest waiting or running job",
            ["queue"],
            registry=self.registry,
        )

        self.oldest_pending_delivery = Gauge(
            "notifyd_oldest_pending_delivery_seconds",
            "age of the oldest pending delivery that is due (0 when none waits)",
            registry=self.registry,
        )
        self.notification_queue_usage = Gauge(
            "notifyd_notification_queue_usage",
            "pg_notification_queue_usage(): the share of PostgreSQL's LISTEN/NOTIFY queue in use (0 to 1)",
            registry=self.registry,
        )

    def set_delivery_figures(
        self,
        counts: list[Mapping[str, Any]],
        queues: list[Mapping[str, Any]],
        pending: Mapping[str, Any],
        circuits: list[Mapping[str, Any]],
    ) -> None:
        self.provider_circuits.rows = circuits
        for gauge in (self.deliveries, self.delivery_repeats, self.queue_jobs, self.queue_oldest):
            gauge.clear()
        repeats: dict[tuple[str, str], float] = {}
        for row in counts:
            self.deliveries.labels(row["channel"], row["provider"], row["status"]).set(row["deliveries"])
            key = (row["channel"], row["provider"])
            repeats[key] = repeats.get(key, 0) + (row["repeats"] or 0)
        for (channel, provider), value in repeats.items():
            self.delivery_repeats.labels(channel, provider).set(value)
        oldest: dict[str, float] = {}
        for row in queues:
            self.queue_jobs.labels(row["queue"], row["status"]).set(row["jobs"])
            oldest[row["queue"]] = max(oldest.get(row["queue"], 0.0), row["oldest_age"] or 0.0)
        for queue, age in oldest.items():
            self.queue_oldest.labels(queue).set(age)
        self.oldest_pending_delivery.set(pending["oldest_pending"] or 0.0)
        self.notification_queue_usage.set(pending["notification_queue_usage"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
