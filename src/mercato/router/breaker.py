"""A circuit breaker per upstream: pure, with an injected clock.

closed --(threshold consecutive failures)--> open --(cooldown)--> half-open
half-open: one probe request at a time; success closes the circuit, failure opens it
again with the cooldown doubled (up to ``max_cooldown_s``). It applies to every
upstream, including a model's only one: a dead single deployment fails fast instead of
making every request wait for its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mercato.router.selection import Circuit

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    threshold: int = 5  # consecutive failures that open the circuit
    cooldown_s: float = 5.0  # open -> half-open
    max_cooldown_s: float = 60.0
    probe_timeout_s: float = 30.0  # a probe with no outcome after this frees its slot


class Breaker:
    def __init__(self, config: BreakerConfig | None = None, clock: Clock = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self.failures = 0  # consecutive
        self.opened_at: float | None = None
        self.cooldown_s = self.config.cooldown_s
        self._probe_since: float | None = None
        self.opens = 0  # times the circuit opened (for metrics and tests)

    def state(self) -> Circuit:
        """CLOSED, OPEN, or HALF_OPEN when a probe may go now."""
        if self.opened_at is None:
            return Circuit.CLOSED
        now = self._clock()
        if self._probe_since is not None:
            if now - self._probe_since < self.config.probe_timeout_s:
                return Circuit.OPEN  # a probe is out: nobody else
            self._probe_since = None
        if now - self.opened_at >= self.cooldown_s:
            return Circuit.HALF_OPEN
        return Circuit.OPEN

    @property
    def is_closed(self) -> bool:
        return self.opened_at is None

    def allow(self) -> bool:
        """Claim the right to send one request now (the probe slot when half-open)."""
        state = self.state()
        if state is Circuit.CLOSED:
            return True
        if state is Circuit.HALF_OPEN:
            self._probe_since = self._clock()
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._probe_since = None
        self.cooldown_s = self.config.cooldown_s

    def record_failure(self) -> None:
        now = self._clock()
        if self.opened_at is not None:
            if self._probe_since is not None:  # the probe failed: open again, longer
                self._probe_since = None
                self.cooldown_s = min(self.cooldown_s * 2, self.config.max_cooldown_s)
                self.opened_at = now
            return
        self.failures += 1
        if self.failures >= self.config.threshold:
            self.opened_at = now
            self.opens += 1

    def release(self) -> None:
        """The claimed request ended without telling anything about the upstream
        (the client left, or the upstream rejected the request itself)."""
        self._probe_since = None
