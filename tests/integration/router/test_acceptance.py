"""Issue 5's acceptance: the official ``openai`` client through the router, three
operators (real ``mercato operator serve`` processes, openai backend in front of
instant upstreams, real receipts) registered on anvil with different prices, one slow.
Strategies, pinning, and an operator killed during 1,000 requests: zero failed client
requests, its circuit opens, and closes after it returns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from openai import AsyncOpenAI

from mercato.chain.client import ChainClient
from mercato.chain.manifest import Manifest
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, verify_receipt
from tests.integration.chain.conftest import NewAccount
from tests.integration.conftest import OperatorProcess, launch_operator

from .conftest import ADMIN, MODEL, Upstream, router_settings, run_router, run_upstream

pytestmark = [pytest.mark.chain, pytest.mark.slow]


@dataclass
class Node:
    slug: str
    price: int
    upstream: Upstream
    proc: OperatorProcess
    address: str  # signing address (registered as the operator's signer)
    service_id: int = 0
    account: str = ""  # the registered operator's address
    env: dict[str, str] | None = None


def operator_env(up: Upstream) -> dict[str, str]:
    return {
        "MERCATO_OPERATOR__BACKEND__KIND": "openai",
        "MERCATO_OPERATOR__BACKEND__OPENAI__BASE_URL": up.url,
        "MERCATO_OPERATOR__BACKEND__OPENAI__MODELS": json.dumps([MODEL]),
    }


async def start_node(tmp: Path, slug: str, price: int, up: Upstream) -> Node:
    env = operator_env(up)
    proc = await asyncio.to_thread(launch_operator, tmp / slug, None, **env)
    async with httpx.AsyncClient() as c:
        address = (await c.get(f"{proc.url}/health")).json()["signing_address"]
    return Node(slug, price, up, proc, address, env=env)


async def register(
    chain: ChainClient, new_account: NewAccount, manifest: Manifest, node: Node, slug: str
) -> None:
    op = chain.for_account(await new_account(1_000))
    node.account = str(op.address)
    stake = manifest.parameters.min_stake
    await op.token.approve(op.registry.address, stake)
    await op.registry.register(slug, node.proc.url, [node.address], "none", stake)
    node.service_id = await op.registry.add_service_id(
        manifest.blueprints["chat"], MODEL, node.price, node.price, 8192
    )


@contextlib.asynccontextmanager
async def network(
    tmp: Path, chain: ChainClient, new_account: NewAccount, manifest: Manifest, db_url: str
) -> AsyncIterator[tuple[str, list[Node]]]:
    tag = Account.create().address[2:8].lower()  # slugs are unique on the shared chain
    async with (
        run_upstream("cheap") as u1,
        run_upstream("dear") as u2,
        run_upstream("slow", delay=0.25) as u3,
    ):
        nodes = list(
            await asyncio.gather(
                start_node(tmp, "cheap", 100, u1),
                start_node(tmp, "dear", 300, u2),
                start_node(tmp, "slow", 200, u3),
            )
        )
        try:
            for node in nodes:
                node.slug = f"{node.slug}-{tag}"
                await register(chain, new_account, manifest, node, node.slug)
            path = manifest.save(tmp / "manifest.json")
            settings = router_settings(
                db_url,
                tmp,
                discovery={"manifest": path, "probe_interval_s": 0.3, "interval_s": 3600},
            )
            async with run_router(settings) as router:
                yield router, nodes
        finally:
            for node in nodes:
                node.proc.stop(signal.SIGKILL)


async def circuits(c: httpx.AsyncClient, router: str) -> dict[str, dict[str, Any]]:
    ops = (
        await c.get(f"{router}/admin/operators", headers={"Authorization": f"Bearer {ADMIN}"})
    ).json()["data"]
    return {o["name"]: o for o in ops}


async def test_openai_client_strategies_pinning_and_failover_under_load(
    tmp_path: Path,
    chain: ChainClient,
    new_account: NewAccount,
    manifest: Manifest,
    sqlite_url: str,
) -> None:
    async with network(tmp_path, chain, new_account, manifest, sqlite_url) as (router, nodes):
        cheap, dear, slow = nodes
        client = AsyncOpenAI(base_url=f"{router}/v1", api_key="unused", max_retries=0)
        msgs = [{"role": "user", "content": "hi"}]

        async def served(**kw: Any) -> str:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=msgs, max_tokens=8, **kw
            )  # type: ignore[arg-type]
            receipt = Receipt.from_json(raw.headers[RECEIPT_HEADER])
            assert receipt.signing_address == raw.headers[
                "x-mercato-operator-address"
            ] or receipt.signing_address in {n.address for n in nodes}
            return str(raw.headers["x-mercato-served-by"])

        # cheapest: the lowest price
        assert {
            await served(extra_body={"mercato": {"strategy": "cheapest"}}) for _ in range(5)
        } == {cheap.slug}
        # lowest-latency: once measured, never the slow one
        for _ in range(6):
            await served(extra_headers={"X-Mercato-Strategy": "lowest-latency"})
        picks = Counter(
            [
                await served(extra_headers={"X-Mercato-Strategy": "lowest-latency"})
                for _ in range(12)
            ]
        )
        assert slow.slug not in picks, picks
        # weighted (the default): cheap and fast wins
        assert {await served() for _ in range(5)} == {cheap.slug}
        # pinning: by slug, by address, by service id
        assert await served(extra_headers={"X-Mercato-Operator": slow.slug}) == slow.slug
        assert await served(extra_headers={"X-Mercato-Operator": dear.account}) == dear.slug
        assert await served(extra_headers={"X-Mercato-Service": str(dear.service_id)}) == dear.slug
        # highest-reputation: failures cost reputation
        cheap.upstream.fail_status = 500
        for _ in range(3):
            with contextlib.suppress(Exception):
                await client.chat.completions.create(
                    model=MODEL,
                    messages=msgs,  # type: ignore[arg-type]
                    extra_headers={"X-Mercato-Operator": cheap.slug},
                )
        cheap.upstream.fail_status = None
        reps = {n: o["scores"]["reputation"] for n, o in (await circuits_of(router)).items()}
        assert reps[cheap.slug] < reps[dear.slug]
        best = await served(extra_headers={"X-Mercato-Strategy": "highest-reputation"})
        assert best != cheap.slug
        # a verified answer checks out with the client's own bytes, through the router
        async with httpx.AsyncClient() as hc:
            body = json.dumps({"model": MODEL, "messages": msgs}).encode()
            r = await hc.post(f"{router}/v1/chat/completions", content=body)
            assert verify_receipt(Receipt.from_json(r.headers[RECEIPT_HEADER]), body, r.content).ok

        # wait for cheap's circuit (opened by the failures above) to close again
        await wait_closed(router, cheap.slug)
        # load: 1,000 requests, 16 at a time; the operator taking them is killed midway
        results: Counter[str] = Counter()
        errors: list[str] = []
        done = 0
        kill_at = 250

        async def worker(n: int) -> None:
            nonlocal done
            for _ in range(n):
                try:
                    results[await served()] += 1
                except Exception as exc:  # any failure seen by the client
                    errors.append(repr(exc))
                done += 1

        async def killer() -> None:
            while done < kill_at:
                await asyncio.sleep(0.005)
            cheap.proc.stop(signal.SIGKILL)

        await asyncio.gather(killer(), *(worker(1000 // 16 + (i < 1000 % 16)) for i in range(16)))
        assert done == 1000
        assert errors == []  # zero failed client requests
        assert results[cheap.slug] >= kill_at - 16 and sum(results.values()) == 1000
        info = (await circuits_of(router))[cheap.slug]
        assert info["circuit_opens"] >= 1 and info["circuit"] != "closed", info
        # it comes back (same keys, same port): the circuit closes and it serves again
        cheap.proc = await asyncio.to_thread(
            launch_operator, cheap.proc.data_dir, cheap.proc.port, **(cheap.env or {})
        )
        await wait_closed(router, cheap.slug)
        # (weighted now also weighs its fresh failures; cheapest shows it is back)
        after = [await served(extra_body={"mercato": {"strategy": "cheapest"}}) for _ in range(5)]
        assert set(after) == {cheap.slug}, (after, await circuits_of(router))
        await client.close()


async def circuits_of(router: str) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient() as c:
        return await circuits(c, router)


async def wait_closed(router: str, slug: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await circuits_of(router))[slug]["circuit"] != "closed":
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{slug}'s circuit did not close")
        await asyncio.sleep(0.1)
