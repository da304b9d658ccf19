"""Prometheus metrics of one operator process, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mercato_operator_requests",
            "Inference requests by endpoint, streaming and HTTP status.",
            ["endpoint", "stream", "status"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "mercato_operator_tokens",
            "Tokens metered, by kind (prompt or completion).",
            ["kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mercato_operator_request_seconds",
            "Time from request to the last byte of the response.",
            ["endpoint", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "mercato_operator_time_to_first_token_seconds",
            "Time from request to the first streamed event.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.receipts = Counter(
            "mercato_operator_receipts_signed",
            "Receipts signed (responses fully sent).",
            registry=self.registry,
        )
        self.aborted = Counter(
            "mercato_operator_streams_aborted",
            "Streams that ended before the last byte (client gone or backend failure).",
            ["reason"],
            registry=self.registry,
        )
        self.queue_waiting = Gauge(
            "mercato_operator_queue_waiting",
            "Requests waiting for a generation slot.",
            registry=self.registry,
        )
        self.queue_busy = Gauge(
            "mercato_operator_queue_busy",
            "Generation slots in use.",
            registry=self.registry,
        )
