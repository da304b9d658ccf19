"""How long the settlement worker lets a served spend authorization wait for its payer's
spend settlement: ``settlement_wait_s`` (300 s by default) after its capture, but never
past ``urgent_s + interval_s`` before its deadline (the wait is cut short, so that a
settlement that never comes costs nothing but the wait), and not at all once a
settlement covering it failed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mercato.operator.settings import PaymentSettings
from mercato.payments.settlement import SettlementPolicy, SettlementWorker
from mercato.payments.store import FALLBACK, PendingSpend
from mercato.storage.payment_models import CLAIMABLE

NOW = 1_800_000_000


def worker(**policy: Any) -> SettlementWorker:
    service: Any = SimpleNamespace(store=None)
    return SettlementWorker(service, None, "0x" + "11" * 20, SettlementPolicy(**policy))  # type: ignore[arg-type]


def spend(captured_ago: int, deadline_in: int, reason: str | None = None) -> PendingSpend:
    return PendingSpend(
        "0x" + "22" * 20, 1, 10, NOW + deadline_in, b"", 5, CLAIMABLE, None,
        NOW - captured_ago, reason,
    )  # fmt: skip


def test_defaults_wait_300_seconds() -> None:
    assert PaymentSettings().settlement_wait_s == 300
    assert SettlementPolicy().settlement_wait_s == 300


def test_a_claim_waits_for_its_settlement_then_goes_alone() -> None:
    w = worker()  # interval 10 s, urgent 60 s, wait 300 s
    assert not w._due(spend(0, 3600), NOW)
    assert not w._due(spend(299, 3600), NOW)
    assert w._due(spend(300, 3600), NOW)
    assert w._due(spend(0, 3600, reason=FALLBACK), NOW)  # its settlement failed
    assert worker(settlement_wait_s=0)._due(spend(0, 3600), NOW)


def test_the_wait_never_passes_the_deadline_margin() -> None:
    w = worker()
    # captured with 200 s left: it waits only until 70 s (urgent + interval) are left
    assert not w._due(spend(0, 200), NOW)
    assert not w._due(spend(129, 71), NOW)
    assert w._due(spend(130, 70), NOW)
    assert w._due(spend(0, 70), NOW)  # captured that late: claimed at once
    # a longer wait, a longer interval: still cut at urgent + interval before the deadline
    w = worker(settlement_wait_s=3600, interval_s=30, urgent_s=120)
    assert not w._due(spend(10, 151), NOW)
    assert w._due(spend(10, 150), NOW)
