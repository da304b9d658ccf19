"""What the router observes of each upstream, in memory: EWMAs that selection reads.

Written by the forwarder (every attempt) and by the health prober; read as frozen
:class:`~mercato.router.selection.Health` snapshots. No I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mercato.router.breaker import Breaker, BreakerConfig, Clock
from mercato.router.selection import Candidate, Health, Offer

ALPHA = 0.2  # weight of the newest observation


def _ewma(old: float | None, new: float, alpha: float = ALPHA) -> float:
    return new if old is None else old + alpha * (new - old)


@dataclass
class UpstreamStats:
    breaker: Breaker
    latency_s: float | None = None
    ttft_s: float | None = None
    success_rate: float = 1.0
    uptime: float = 1.0
    feedback: float = 0.5
    feedback_count: int = 0
    inflight: int = 0
    healthy: bool = True
    requests: int = 0
    failures: int = 0
    probe_latency_s: float | None = None
    last_probe: float | None = None

    def record_attempt(self, ok: bool, latency_s: float, ttft_s: float | None = None) -> None:
        self.requests += 1
        self.success_rate = _ewma(self.success_rate, 1.0 if ok else 0.0)
        if ok:
            self.latency_s = _ewma(self.latency_s, latency_s)
            if ttft_s is not None:
                self.ttft_s = _ewma(self.ttft_s, ttft_s)
            self.breaker.record_success()
        else:
            self.failures += 1
            self.breaker.record_failure()

    def record_probe(self, ok: bool, latency_s: float, now: float) -> None:
        """A health probe: uptime, and the breaker (a failing probe counts as a failure;
        an answering one closes a circuit whose cooldown is over)."""
        self.healthy = ok
        self.last_probe = now
        self.uptime = _ewma(self.uptime, 1.0 if ok else 0.0, 0.1)
        if ok:
            self.probe_latency_s = _ewma(self.probe_latency_s, latency_s)
            if not self.breaker.is_closed and self.breaker.allow():
                self.breaker.record_success()
        else:
            self.breaker.record_failure()

    def record_feedback(self, score: float) -> None:
        self.feedback_count += 1
        self.feedback = _ewma(self.feedback, min(1.0, max(0.0, score)), 0.1)

    def health(self) -> Health:
        return Health(
            latency_s=self.latency_s,
            ttft_s=self.ttft_s,
            success_rate=self.success_rate,
            uptime=self.uptime,
            feedback=self.feedback,
            inflight=self.inflight,
            healthy=self.healthy,
            circuit=self.breaker.state(),
        )


@dataclass
class StatsBoard:
    """Stats per upstream key (operator address or ``provider:<name>``)."""

    breaker_config: BreakerConfig = field(default_factory=BreakerConfig)
    clock: Clock = time.monotonic
    upstreams: dict[str, UpstreamStats] = field(default_factory=dict)

    def get(self, upstream: str) -> UpstreamStats:
        stats = self.upstreams.get(upstream)
        if stats is None:
            stats = UpstreamStats(Breaker(self.breaker_config, self.clock))
            self.upstreams[upstream] = stats
        return stats

    def candidates(self, offers: list[Offer]) -> list[Candidate]:
        return [Candidate(o, self.get(o.upstream).health()) for o in offers]
