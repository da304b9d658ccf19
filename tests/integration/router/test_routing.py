"""The router over real operator apps (openai backend, real receipts) and providers."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import orjson
import pytest

from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, split_sse_receipt, verify_receipt
from tests.helpers import free_port

from .conftest import (
    ADMIN,
    MODEL,
    OperatorNode,
    router_settings,
    run_operator,
    run_router,
    run_upstream,
    wait_for,
)

REQ = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@contextlib.asynccontextmanager
async def three(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with (
        run_operator(tmp_path, "cheap", 11) as a,
        run_operator(tmp_path, "mid", 12) as b,
        run_operator(tmp_path, "dear", 13) as c,
    ):
        yield a, b, c


def statics(cheap: OperatorNode, mid: OperatorNode, dear: OperatorNode) -> list[dict[str, object]]:
    return [
        cheap.static(100, service_id=1),
        mid.static(200, service_id=2, blueprint_id=7),
        dear.static(300, service_id=3, tee=True),
    ]


async def test_strategies_pinning_headers_and_receipts(tmp_path: Path, sqlite_url: str) -> None:
    async with three(tmp_path) as (cheap, mid, dear):
        settings = router_settings(sqlite_url, tmp_path, operators=statics(cheap, mid, dear))
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            raw = orjson.dumps({**REQ, "mercato": {"strategy": "cheapest"}})
            resp = await c.post(f"{router}/v1/chat/completions", content=raw)
            assert resp.status_code == 200, resp.text
            h = resp.headers
            assert h["x-mercato-served-by"] == "cheap"
            assert h["x-mercato-operator-address"] == cheap.address
            assert h["x-mercato-strategy"] == "cheapest"
            assert h["x-mercato-price"] == "in=100;out=100;per=1000000"
            assert resp.json()["choices"][0]["message"]["content"] == "from cheap"
            # The operator's receipt, unchanged, verifies against the client's own bytes.
            receipt = Receipt.from_json(h[RECEIPT_HEADER])
            assert receipt.signing_address == cheap.address
            assert verify_receipt(receipt, raw, resp.content).ok
            # The body reached the operator byte for byte (Mercato's fields included).
            assert cheap.upstream.last_body is not None
            assert cheap.upstream.last_body["mercato"] == {"strategy": "cheapest"}

            for header, value, expect in [
                ("X-Mercato-Operator", "dear", "dear"),
                ("X-Mercato-Operator", mid.address.lower(), "mid"),
                ("X-Mercato-Service", "3", "dear"),
                ("X-Mercato-Blueprint", "7", "mid"),
            ]:
                r = await c.post(
                    f"{router}/v1/chat/completions",
                    json=REQ,
                    headers={header: value, "X-Mercato-Strategy": "cheapest"},
                )
                assert r.headers["x-mercato-served-by"] == expect, (header, value)
            r = await c.post(
                f"{router}/v1/chat/completions", json={**REQ, "provider": {"require_tee": True}}
            )
            assert r.headers["x-mercato-served-by"] == "dear"
            r = await c.post(
                f"{router}/v1/chat/completions", json=REQ, headers={"X-Mercato-Operator": "nobody"}
            )
            assert r.status_code == 400 and r.json()["error"]["code"] == "no_matching_upstream"
            r = await c.post(f"{router}/v1/chat/completions", json={**REQ, "model": "nope"})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
            r = await c.post(
                f"{router}/v1/chat/completions", json=REQ, headers={"X-Mercato-Strategy": "fastest"}
            )
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_strategy"
            models = (await c.get(f"{router}/v1/models")).json()["data"]
            assert [m["id"] for m in models] == [MODEL] and len(models[0]["offers"]) == 3
            ops = await c.get(
                f"{router}/admin/operators", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            assert {o["name"] for o in ops.json()["data"]} == {"cheap", "mid", "dear"}


async def test_lowest_latency_and_weighted_avoid_the_slow_operator(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with (
        run_operator(tmp_path, "slowcheap", 21, delay=0.3) as slow,
        run_operator(tmp_path, "fast", 22) as fast,
    ):
        ops = [slow.static(100), fast.static(120)]
        settings = router_settings(sqlite_url, tmp_path, operators=ops)
        async with run_router(settings) as router, httpx.AsyncClient() as c:

            async def served(strategy: str) -> str:
                r = await c.post(
                    f"{router}/v1/chat/completions",
                    json=REQ,
                    headers={"X-Mercato-Strategy": strategy},
                )
                assert r.status_code == 200
                return r.headers["x-mercato-served-by"]

            for _ in range(4):  # both measured
                await served("lowest-latency")
            picks = [await served("lowest-latency") for _ in range(10)]
            assert picks.count("fast") == 10
            assert [await served("cheapest") for _ in range(3)] == ["slowcheap"] * 3
            # weighted: 20% dearer but 300 ms faster
            assert [await served("weighted") for _ in range(5)] == ["fast"] * 5


async def test_failover_breaker_and_recovery(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    async with run_operator(tmp_path, "steady", 31) as steady:
        flaky_ctx = run_operator(tmp_path, "flaky", 32, port=port)
        flaky = await flaky_ctx.__aenter__()
        settings = router_settings(
            sqlite_url,
            tmp_path,
            operators=[flaky.static(1), steady.static(500)],
            discovery={"probe_interval_s": 60},
        )
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            body = {**REQ, "mercato": {"strategy": "cheapest"}}
            r = await c.post(f"{router}/v1/chat/completions", json=body)
            assert r.headers["x-mercato-served-by"] == "flaky"
            await flaky_ctx.__aexit__(None, None, None)  # the operator goes away
            for _ in range(5):
                r = await c.post(f"{router}/v1/chat/completions", json=body)
                assert r.status_code == 200 and r.headers["x-mercato-served-by"] == "steady"
            ops = (
                await c.get(
                    f"{router}/admin/operators", headers={"Authorization": f"Bearer {ADMIN}"}
                )
            ).json()["data"]
            info = next(o for o in ops if o["name"] == "flaky")
            assert info["circuit"] in ("open", "half_open"), str(info)
            assert info["failures"] == 3 and info["circuit_opens"] == 1
            # once open, the dead one is not tried: one attempt per request
            r = await c.post(f"{router}/v1/chat/completions", json=body)
            assert r.headers["x-mercato-attempts"] == "1"
            metrics = (await c.get(f"{router}/metrics")).text
            assert "mercato_router_failovers_total 3.0" in metrics
            # it comes back on the same port: a half-open request closes the circuit
            async with run_operator(tmp_path, "flaky", 32, port=port):
                await wait_for_circuit(c, router, "flaky", "closed", body)
                r = await c.post(f"{router}/v1/chat/completions", json=body)
                assert r.headers["x-mercato-served-by"] == "flaky"


async def wait_for_circuit(
    c: httpx.AsyncClient, router: str, name: str, state: str, body: dict[str, object]
) -> None:
    async def circuit() -> str:
        ops = (
            await c.get(f"{router}/admin/operators", headers={"Authorization": f"Bearer {ADMIN}"})
        ).json()["data"]
        return str(next(o for o in ops if o["name"] == name)["circuit"])

    for _ in range(100):
        await c.post(f"{router}/v1/chat/completions", json=body)
        if await circuit() == state:
            return
        import asyncio

        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never became {state}")


async def test_receipt_from_an_unregistered_signer_is_rejected(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with (
        run_operator(tmp_path, "liar", 41) as liar,
        run_operator(tmp_path, "honest", 42) as ok,
    ):
        wrong = liar.static(1)
        wrong["signers"] = ["0x" + "cd" * 20]
        settings = router_settings(
            sqlite_url,
            tmp_path,
            operators=[wrong, ok.static(9)],
            discovery={"probe_interval_s": 60},
        )
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            r = await c.post(
                f"{router}/v1/chat/completions",
                json=REQ,
                headers={"X-Mercato-Strategy": "cheapest"},
            )
            assert r.status_code == 200 and r.headers["x-mercato-served-by"] == "honest"
            # its health probe already showed a signer that is not registered: ranked last
            r = await c.post(
                f"{router}/v1/chat/completions", json=REQ, headers={"X-Mercato-Operator": "liar"}
            )
            assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_failed"
            assert "bad_receipt" in r.json()["error"]["message"]


@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_is_relayed_with_the_receipt(
    tmp_path: Path, sqlite_url: str, include_usage: bool
) -> None:
    async with run_operator(tmp_path, "streamer", 51) as op:
        settings = router_settings(sqlite_url, tmp_path, operators=[op.static(1_000_000)])
        body = {**REQ, "stream": True}
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        raw = orjson.dumps(body)
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            resp = await c.post(f"{router}/v1/chat/completions", content=raw)
        assert resp.status_code == 200
        assert resp.headers["x-mercato-served-by"] == "streamer"
        signed, receipt = split_sse_receipt(resp.content)
        assert receipt is not None and verify_receipt(receipt, raw, signed).ok
        assert b"from " in signed and signed.endswith(b"data: [DONE]\n\n")
        tail = resp.content.split(b": mercato-cost ")[1]
        # 1 unit per token at 1,000,000 per 1M: usage if sent, else one per content event
        assert orjson.loads(tail.strip())["cost"] == (10 if include_usage else 3 + len(raw) // 4)


async def test_zero_data_retention_goes_to_the_verified_provider(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with (
        run_operator(tmp_path, "op", 61) as op,
        run_upstream("prov") as prov,
        run_upstream("plain") as plain,
    ):
        providers = [
            {
                "name": "zdrco",
                "base_url": prov.url,
                "api_key": "sk-upstream-secret",
                "models": [MODEL],
                "model_map": {MODEL: "their-model"},
                "price_in_per_m": 5,
                "price_out_per_m": 5,
                "zdr": True,
                "no_train": True,
            },
            {"name": "plainco", "base_url": plain.url, "models": [MODEL]},
        ]
        ops = [op.static(1, zdr=True)] if False else [op.static(1)]
        settings = router_settings(sqlite_url, tmp_path, operators=ops, providers=providers)
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            r = await c.post(f"{router}/v1/chat/completions", json=REQ)
            assert r.headers["x-mercato-served-by"] == "op"  # operators first
            r = await c.post(
                f"{router}/v1/chat/completions",
                json={**REQ, "provider": {"data_collection": "deny"}},
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-mercato-served-by"] == "zdrco"
            assert r.headers["x-mercato-upstream-kind"] == "provider"
            assert RECEIPT_HEADER.lower() not in r.headers
            assert prov.last_body is not None and prov.last_body["model"] == "their-model"
            assert "provider" not in prov.last_body and "mercato" not in prov.last_body
            assert prov.last_headers is not None
            assert prov.last_headers["Authorization"] == "Bearer sk-upstream-secret"
            # the operator gone: providers are the fallback
            r = await c.post(
                f"{router}/v1/chat/completions", json=REQ, headers={"X-Mercato-Operator": "plainco"}
            )
            assert r.headers["x-mercato-served-by"] == "plainco"


async def test_client_errors_pass_through_and_are_not_retried(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with run_operator(tmp_path, "a", 71) as a, run_operator(tmp_path, "b", 72) as b:
        a.upstream.fail_status = 400
        b.upstream.fail_status = 400
        settings = router_settings(sqlite_url, tmp_path, operators=[a.static(1), b.static(2)])
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            r = await c.post(f"{router}/v1/chat/completions", json=REQ)
            assert r.status_code == 400 and r.json()["error"]["code"] == "upstream_rejected"
            assert a.upstream.hits + b.upstream.hits == 1
            a.upstream.fail_status = b.upstream.fail_status = 503
            r = await c.post(f"{router}/v1/chat/completions", json=REQ)
            assert r.status_code == 502 and r.headers["x-mercato-attempts"] == "2"
            await wait_for(lambda: True)
