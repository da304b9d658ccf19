"""The circuit breaker with a hand-driven clock."""

from __future__ import annotations

from mercato.router.breaker import Breaker, BreakerConfig
from mercato.router.selection import Circuit
from mercato.router.stats import StatsBoard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_after_cooldown() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(threshold=3, cooldown_s=5, max_cooldown_s=20), clock)
    b.record_failure()
    b.record_failure()
    b.record_success()  # not consecutive any more
    b.record_failure()
    b.record_failure()
    assert b.state() is Circuit.CLOSED and b.allow()
    b.record_failure()
    assert b.state() is Circuit.OPEN and not b.allow() and b.opens == 1
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.2
    assert b.state() is Circuit.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # only one at a time
    b.record_failure()  # probe failed: open again, cooldown doubled
    assert b.state() is Circuit.OPEN and b.cooldown_s == 10
    clock.now += 9
    assert not b.allow()
    clock.now += 1
    assert b.allow()
    b.record_success()
    assert b.state() is Circuit.CLOSED and b.cooldown_s == 5 and b.failures == 0


def test_cooldown_is_capped_and_a_lost_probe_frees_its_slot() -> None:
    clock = Clock()
    config = BreakerConfig(threshold=1, cooldown_s=8, max_cooldown_s=10, probe_timeout_s=3)
    b = Breaker(config, clock)
    b.record_failure()
    for _ in range(3):
        clock.now += 100
        assert b.allow()
        b.record_failure()
    assert b.cooldown_s == 10
    clock.now += 10
    assert b.allow()
    assert not b.allow()
    clock.now += 3  # the probe never reported
    assert b.allow()
    b.release()
    assert b.state() is Circuit.HALF_OPEN


def test_single_upstream_still_breaks_and_probes_close_it() -> None:
    clock = Clock()
    board = StatsBoard(BreakerConfig(threshold=2, cooldown_s=1), clock)
    s = board.get("0xonly")
    s.record_attempt(False, 1.0)
    s.record_attempt(False, 1.0)
    assert s.health().circuit is Circuit.OPEN and s.success_rate < 1
    s.record_probe(True, 0.01, clock.now)  # cooldown not over: stays open
    assert s.health().circuit is Circuit.OPEN
    clock.now += 1
    s.record_probe(True, 0.01, clock.now)
    assert s.health().circuit is Circuit.CLOSED


def test_ewma_stats() -> None:
    board = StatsBoard()
    s = board.get("u")
    s.record_attempt(True, 1.0, 0.5)
    assert s.latency_s == 1.0 and s.ttft_s == 0.5
    s.record_attempt(True, 2.0)
    assert s.latency_s is not None and abs(s.latency_s - 1.2) < 1e-9
    s.record_feedback(0.0)
    assert s.feedback < 0.5
