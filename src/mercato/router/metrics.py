"""Prometheus metrics of one router process, in a registry of its own."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RouterMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mercato_router_requests",
            "Requests by endpoint, status and upstream kind.",
            ["endpoint", "status", "upstream_kind"],
            registry=r,
        )
        self.attempts = Counter(
            "mercato_router_attempts",
            "Upstream attempts by upstream name and outcome.",
            ["upstream", "outcome"],
            registry=r,
        )
        self.failovers = Counter(
            "mercato_router_failovers",
            "Requests answered after at least one failed attempt.",
            registry=r,
        )
        self.latency = Histogram(
            "mercato_router_request_seconds",
            "Time from request to the answer (JSON) or to the end of the stream.",
            ["endpoint", "stream"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.charged = Counter(
            "mercato_router_charged", "Credits captured, in base units.", registry=r
        )
        self.refused = Counter(
            "mercato_router_refused",
            "Requests refused before forwarding, by code.",
            ["code"],
            registry=r,
        )
        self.circuit = Gauge(
            "mercato_router_circuit_open",
            "1 while the upstream's circuit is open.",
            ["upstream"],
            registry=r,
        )
        self.circuit_opens = Gauge(
            "mercato_router_circuit_opens",
            "Times the upstream's circuit opened.",
            ["upstream"],
            registry=r,
        )
        self.offers = Gauge("mercato_router_offers", "Offers in the routing table.", registry=r)
        self.settlements = Gauge(
            "mercato_router_spend_settlements",
            "Spend settlements the router's payer posted to operators, by outcome "
            "(accepted, refused, failed: not delivered).",
            ["outcome"],
            registry=r,
        )
        self.writer_queue = Gauge(
            "mercato_router_writer_queue", "Jobs waiting for the database writer.", registry=r
        )
        self.history_dropped = Gauge(
            "mercato_router_history_dropped",
            "History rows dropped since start-up because the writer's queue was full.",
            registry=r,
        )

        # Labelled children, looked up once: ``labels()`` takes a lock and builds a key.
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_done(
        self, endpoint: str, status: int, upstream_kind: str, stream: bool, latency_s: float
    ) -> None:
        self._child(self.requests, endpoint, str(status), upstream_kind).inc()
        self._child(self.latency, endpoint, "true" if stream else "false").observe(latency_s)

    def attempt(self, upstream: str, outcome: str) -> None:
        self._child(self.attempts, upstream, outcome).inc()
