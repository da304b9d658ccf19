"""Credits, keys, history and analytics: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mercato.errors import PaymentRequired
from mercato.router.credits import REVENUE, TOPUPS, Credits, held_account, key_account
from mercato.router.history import History
from mercato.router.writer import Job, Journal, Writer
from mercato.storage.db import make_engine, migrate
from mercato.storage.router_models import RouterBalance, RouterLedgerEntry, RouterRequest

from .conftest import ADMIN, MODEL, admin_key, router_settings, run_operator, run_router

REQ = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


def history_row(rid: str, key: str, cost: int) -> dict[str, object]:
    return {
        "request_id": rid,
        "key_id": key,
        "payer": None,
        "model": MODEL,
        "endpoint": "chat",
        "stream": False,
        "strategy": "weighted",
        "upstream_kind": "operator",
        "upstream": "0x1",
        "upstream_name": "op",
        "service_id": 1,
        "status": 200,
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "cost": cost,
        "latency_ms": 1.0,
        "ttft_ms": None,
        "attempts": 1,
        "receipt_id": None,
        "receipt_signer": None,
        "created_at": 1_700_000_000_000,
    }


async def test_ledger_hold_capture_release_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    writer = Writer(engine, flush_interval_s=0.01)
    await writer.start()
    credits = Credits(engine, writer)
    await credits.load()
    assert await credits.topup("k1", 1000, "t1") == 1000
    assert await credits.topup("k1", 1000, "t1") == 1000  # same top-up id: once
    with pytest.raises(PaymentRequired) as err:
        credits.hold("k1", "r0", 1001)
    assert err.value.code == "insufficient_credits" and err.value.status == 402
    h1 = credits.hold("k1", "r1", 600)
    assert credits.balance("k1") == 400
    with pytest.raises(PaymentRequired):
        credits.hold("k1", "r2", 401)
    assert await credits.settle(h1, 250, history_row("r1", "k1", 250)) == 250
    assert credits.balance("k1") == 750
    h2 = credits.hold("k1", "r2", 100)
    credits.release(h2)  # failed request: nothing written
    h3 = credits.hold("k1", "r1", 100)  # the same request id again (a client retry)
    assert await credits.settle(h3, 100, history_row("r1", "k1", 100)) == 0  # never twice
    assert credits.balance("k1") == 750
    await asyncio.gather(
        *(
            credits.settle(credits.hold("k1", f"c{i}", 10), 7, history_row(f"c{i}", "k1", 7))
            for i in range(50)
        )
    )
    assert credits.balance("k1") == 750 - 350
    await writer.close()

    with Session(engine) as s:
        balances = dict(s.execute(select(RouterBalance.account, RouterBalance.balance)).all())
        assert balances[key_account("k1")] == 400
        assert balances[held_account("k1")] == 0  # every hold captured or released
        assert balances[REVENUE] == 600 and balances[TOPUPS] == -1000
        assert s.scalar(select(func.sum(RouterLedgerEntry.amount))) == 0  # double entry
        per_tx = s.execute(
            select(RouterLedgerEntry.tx_id, func.sum(RouterLedgerEntry.amount)).group_by(
                RouterLedgerEntry.tx_id
            )
        ).all()
        assert all(total == 0 for _, total in per_tx)
        captures = s.scalars(
            select(RouterLedgerEntry.request_id).where(
                RouterLedgerEntry.kind == "capture", RouterLedgerEntry.amount > 0
            )
        ).all()
        assert len(captures) == len(set(captures)) == 51
        spent = s.scalar(select(func.sum(RouterRequest.cost)).where(RouterRequest.key_id == "k1"))
        assert spent == balances[REVENUE]  # history agrees with the ledger
    credits2 = Credits(engine, Writer(engine))  # a restart reads the same balance
    await credits2.load()
    assert credits2.balance("k1") == 400
    history = History(engine)
    rows = await history.recent(key_id="k1", limit=5)
    assert len(rows) == 5
    stats = await history.analytics(key_id="k1")
    assert stats["total"]["requests"] == 51 and stats["total"]["spend"] == 600
    assert stats["by_day"][0]["day"] == "2023-11-14" and stats["by_model"][0]["model"] == MODEL
    engine.dispose()


async def test_keys_credits_history_over_http(tmp_path: Path, db_url: str) -> None:
    async with run_operator(tmp_path, "paid", 81) as op:
        # 1 unit per token in and out, so the upstream's usage (10 + 5) costs 15
        settings = router_settings(
            db_url, tmp_path, operators=[op.static(1_000_000)], billing={"auth": "required"}
        )
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            r = await c.post(f"{router}/v1/chat/completions", json=REQ)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            r = await c.post(f"{router}/admin/keys", json={}, headers={"Authorization": "Bearer x"})
            assert r.status_code == 401
            key = await admin_key(c, router, credits=1000)
            assert key["key"].startswith("sk-") and key["balance"] == 1000
            auth = {"Authorization": f"Bearer {key['key']}"}
            r = await c.post(f"{router}/v1/chat/completions", json=REQ, headers=auth)
            assert r.status_code == 200, r.text
            assert r.headers["x-mercato-cost"] == "15"
            # the hold: request bytes (prompt bound) + max_tokens, at 1 per token
            big = {**REQ, "max_tokens": 5000}
            r = await c.post(f"{router}/v1/chat/completions", json=big, headers=auth)
            assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_credits"
            rid = "retry-1"
            for _ in range(2):  # a client retry with the same Idempotency-Key pays once
                r = await c.post(
                    f"{router}/v1/chat/completions",
                    json=REQ,
                    headers={**auth, "Idempotency-Key": rid},
                )
                assert r.status_code == 200
            mine = (await c.get(f"{router}/v1/credits", headers=auth)).json()
            assert mine["balance"] == 1000 - 30
            await asyncio.sleep(0.2)  # history rows of free answers are lazy
            hist = (await c.get(f"{router}/v1/history", headers=auth)).json()["data"]
            assert len(hist) == 2 and {h["cost"] for h in hist} == {15}
            assert hist[0]["receipt_signer"] == op.address and hist[0]["upstream_name"] == "paid"
            stats = (await c.get(f"{router}/v1/analytics", headers=auth)).json()
            assert stats["total"]["spend"] == 30 and stats["total"]["success_rate"] == 1.0
            assert stats["by_operator"][0]["upstream_name"] == "paid"
            admin = {"Authorization": f"Bearer {ADMIN}"}
            r = await c.post(
                f"{router}/admin/keys/{key['key_id']}/credits",
                json={"amount": 500, "topup_id": "t-1"},
                headers=admin,
            )
            assert r.json()["balance"] == 1470
            r = await c.post(
                f"{router}/admin/keys/{key['key_id']}/credits",
                json={"amount": 500, "topup_id": "t-1"},
                headers=admin,
            )
            assert r.json()["balance"] == 1470  # same top-up id: once
            r = await c.get(
                f"{router}/admin/analytics", params={"key_id": key["key_id"]}, headers=admin
            )
            assert r.json()["total"]["requests"] == 2
            await c.delete(f"{router}/admin/keys/{key['key_id']}", headers=admin)
            r = await c.post(f"{router}/v1/chat/completions", json=REQ, headers=auth)
            assert r.status_code == 401


async def test_history_of_uncharged_requests_is_written_without_other_traffic(
    db_url: str,
) -> None:
    """Rows of requests that charge nothing (auth off, wallets) never wake the writer
    with a charge of their own: they go out after the flush interval, and a full batch
    goes out at once, so the queue stays bounded under load."""
    engine = make_engine(db_url)
    migrate(engine)
    writer = Writer(engine, flush_interval_s=0.2, max_batch=50)
    await writer.start()

    def rows() -> int:
        with Session(engine) as s:
            return int(s.scalar(select(func.count()).select_from(RouterRequest)) or 0)

    try:
        writer.add_history(history_row("lone", "k", 0))
        await asyncio.sleep(0.05)
        assert rows() == 0  # waits for the interval, to batch
        for _ in range(40):
            await asyncio.sleep(0.05)
            if rows() == 1:
                break
        assert rows() == 1 and writer.queued == 0
        for i in range(50):  # a full batch: no waiting for the interval
            writer.add_history(history_row(f"r{i}", "k", 0))
        for _ in range(40):
            await asyncio.sleep(0.01)
            if rows() == 51:
                break
        assert rows() == 51
    finally:
        await writer.close()
        engine.dispose()


async def test_one_large_commit_writes_every_row_and_line(db_url: str) -> None:
    """Rows go in as multi-row INSERTs in chunks (router/writer.py): a commit of
    1,500 history rows and 1,300 journals over 650 accounts (sizes that are not
    multiples of any chunk) writes each of them once, with its values intact."""
    engine = make_engine(db_url)
    migrate(engine)
    writer = Writer(engine, flush_interval_s=60, max_batch=5000)
    for i in range(1500):
        row = history_row(f"h{i}", f"k{i % 7}", i)
        row.update(stream=i % 2 == 0, latency_ms=i / 8, ttft_ms=None if i % 3 else i / 4)
        writer.add_history(row)
    for i in range(1300):
        lines = ((f"key:a{i % 650}", -(i + 1)), (f"key:b{i % 650}", i + 1))
        writer.submit(Job([Journal(f"t{i}", "capture", lines, f"h{i}")]))
    await writer.start()
    await writer.close()  # writes everything queued
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(RouterRequest)) == 1500
        got = {r.request_id: r for r in s.scalars(select(RouterRequest))}
        for i in (0, 1, 511, 512, 513, 1023, 1024, 1499):
            r = got[f"h{i}"]
            assert (r.key_id, r.cost, r.stream, r.latency_ms) == (f"k{i % 7}", i, i % 2 == 0, i / 8)
            assert r.ttft_ms == (None if i % 3 else i / 4)
        assert s.scalar(select(func.count()).select_from(RouterLedgerEntry)) == 2600
        assert s.scalar(select(func.count(func.distinct(RouterLedgerEntry.idem_key)))) == 2600
        balances = dict(s.execute(select(RouterBalance.account, RouterBalance.balance)).all())
        assert len(balances) == 1300
        # account a{n} took part in journals n and n + 650
        assert balances["key:a0"] == -(1 + 651) and balances["key:b649"] == 650 + 1300
    engine.dispose()


async def test_history_beyond_the_queue_bound_is_dropped_and_counted(db_url: str) -> None:
    """While the database is unreachable (here: the writer not started yet) history rows
    of uncharged requests wait up to ``max_queued``; later ones are dropped and counted,
    so an outage cannot exhaust memory. Journals are never dropped."""
    engine = make_engine(db_url)
    migrate(engine)
    writer = Writer(engine, max_queued=3)
    for i in range(5):
        writer.add_history(history_row(f"q{i}", "k", 0))
    writer.submit(Job([Journal("t1", "capture", (("key:a", -1), ("key:b", 1)))], None))
    assert (writer.queued, writer.dropped) == (4, 2)
    await writer.start()
    await writer.close()
    with Session(engine) as s:
        ids = set(s.scalars(select(RouterRequest.request_id)))
        assert ids == {"q0", "q1", "q2"}
        assert s.scalar(select(func.count()).select_from(RouterLedgerEntry)) == 2
    engine.dispose()
