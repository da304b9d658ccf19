"""Prometheus metrics of one router process, in a registry of its own."""

from __future__ import annotations

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
        self.writer_queue = Gauge(
            "mercato_router_writer_queue", "Jobs waiting for the database writer.", registry=r
        )
