"""The router SIGKILLed under load and restarted: every request charged at most once,
every hold captured or released, balances consistent with the history, and no answer
a client received is left uncharged. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mercato.router.credits import REVENUE, held_account, key_account
from mercato.storage.db import make_engine
from mercato.storage.router_models import RouterBalance, RouterLedgerEntry, RouterRequest
from tests.helpers import free_port

from .conftest import ADMIN, MODEL, run_operator

pytestmark = pytest.mark.slow
TOPUP = 10_000_000


def toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists are valid TOML this way


def write_config(path: Path, port: int, db_url: str, operators: list[dict[str, Any]]) -> Path:
    lines = [
        "[router]",
        f"port = {port}",
        f"database_url = {toml_value(db_url)}",
        f"data_dir = {toml_value(str(path.parent / 'router'))}",
        "",
        "[router.billing]",
        'auth = "required"',
        f"admin_token = {toml_value(ADMIN)}",
        "",
        "[router.discovery]",
        "probe_interval_s = 1.0",
        "",
    ]
    for op in operators:
        lines.append("[[router.operators]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in op.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@dataclass
class RouterProcess:
    url: str
    proc: subprocess.Popen[bytes]


def launch_router(config: Path, port: int, log: Path) -> RouterProcess:
    argv = [sys.executable, "-m", "mercato.cli.main", "router", "serve", "--config", str(config)]
    proc = subprocess.Popen(
        argv, env=dict(os.environ), stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"router exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return RouterProcess(url, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"router did not start:\n{log.read_text()[-3000:]}")


@dataclass
class Outcome:
    idem: str
    status: int | None  # None: no answer (connection refused or cut)
    cost: int | None = None


async def test_sigkill_under_load_charges_at_most_once(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    log = tmp_path / "router.log"
    async with run_operator(tmp_path, "o1", 91) as o1, run_operator(tmp_path, "o2", 92) as o2:
        ops = [o1.static(1_000_000), o2.static(1_000_000)]  # cost = tokens: 10 + 5
        config = write_config(tmp_path / "router.toml", port, db_url, ops)
        router = await asyncio.to_thread(launch_router, config, port, log)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(timeout=10) as c:
            doc = (
                await c.post(f"{router.url}/admin/keys", json={"credits": TOPUP}, headers=admin)
            ).json()
            key_id, auth = doc["key_id"], {"Authorization": f"Bearer {doc['key']}"}
            outcomes: list[Outcome] = []
            stop = asyncio.Event()
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 50,
            }

            async def send(idem: str) -> Outcome:
                try:
                    r = await c.post(
                        f"{router.url}/v1/chat/completions",
                        json=body,
                        headers={**auth, "Idempotency-Key": idem},
                    )
                except httpx.HTTPError:
                    return Outcome(idem, None)
                cost = int(r.headers["x-mercato-cost"]) if r.status_code == 200 else None
                return Outcome(idem, r.status_code, cost)

            cut: set[str] = set()

            async def worker() -> None:
                # a client that retries a request it got no answer to, same Idempotency-Key
                while not stop.is_set():
                    idem = uuid.uuid4().hex
                    while (out := await send(idem)).status is None:
                        cut.add(idem)
                        await asyncio.sleep(0.05)
                    outcomes.append(out)

            workers = [asyncio.create_task(worker()) for _ in range(12)]
            while len(outcomes) < 200:
                await asyncio.sleep(0.01)
            router.proc.send_signal(signal.SIGKILL)  # mid-load, requests in flight
            router.proc.wait()
            killed_at = len(outcomes)
            router = await asyncio.to_thread(launch_router, config, port, log)
            while len(outcomes) < killed_at + 200:
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.gather(*workers)
            assert cut, "the kill should have cut some requests"
            answered = [o for o in outcomes if o.status == 200]
            assert len(answered) == len(outcomes)
            # repeats of answered requests (same Idempotency-Key)
            repeated = [await send(o.idem) for o in answered[:20]]
            assert all(o.status == 200 for o in repeated)
            assert all(o.cost == 0 for o in repeated)  # already paid: not again
            balance = (await c.get(f"{router.url}/v1/credits", headers=auth)).json()["balance"]
        router.proc.send_signal(signal.SIGTERM)
        router.proc.wait(30)

    engine = make_engine(db_url)
    with Session(engine) as s:
        balances = dict(s.execute(select(RouterBalance.account, RouterBalance.balance)).all())
        assert balances[held_account(key_id)] == 0  # every hold captured or released
        assert s.scalar(select(func.sum(RouterLedgerEntry.amount))) == 0
        unbalanced = s.execute(
            select(RouterLedgerEntry.tx_id)
            .group_by(RouterLedgerEntry.tx_id)
            .having(func.sum(RouterLedgerEntry.amount) != 0)
        ).all()
        assert unbalanced == []
        captures = s.execute(
            select(RouterLedgerEntry.request_id, func.count(), func.sum(RouterLedgerEntry.amount))
            .where(RouterLedgerEntry.kind == "capture", RouterLedgerEntry.amount > 0)
            .group_by(RouterLedgerEntry.request_id)
        ).all()
        assert all(n == 1 for _, n, _ in captures)  # charged at most once
        charged = {rid: int(amount) for rid, _, amount in captures}
        history = dict(
            s.execute(
                select(RouterRequest.request_id, RouterRequest.cost).where(
                    RouterRequest.key_id == key_id, RouterRequest.cost > 0
                )
            ).all()
        )
        assert history == charged  # the history says exactly what the ledger charged
        spent = sum(charged.values())
        assert balances[key_account(key_id)] == TOPUP - spent == balance
        assert balances[REVENUE] >= spent
        # every answer a client received is charged (no capture lost to the kill)
        for o in answered:
            if o.cost:
                assert charged.get(f"{key_id}:{o.idem}") == o.cost, o
        assert len(charged) == len({o.idem for o in answered})
    engine.dispose()
