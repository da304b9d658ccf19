"""The router's payer seam over real operator apps (openai backend, real receipts): the
payer is told each paid attempt's outcome with the operator's verified receipt and the
payment headers it was sent with (JSON: once the receipt is checked; a stream: once it
has ended), also for failed attempts; what the payer raises never reaches the client;
the payer is closed when the router stops."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx
import orjson
import pytest

from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, split_sse_receipt
from mercato.router.pricing import Estimate
from mercato.router.selection import Offer

from .conftest import router_settings, run_operator, run_router, wait_for

REQ = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


class Recorder:
    """A payer that records what it is told (and fails on request)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent = 0
        self.calls: list[tuple[str, int, Receipt | None, dict[str, str]]] = []
        self.closed = False

    async def payment_headers(self, operator: Offer, estimate: Estimate) -> dict[str, str]:
        self.sent += 1
        return {"X-Test-Payment": str(self.sent)}

    async def on_response(
        self,
        operator: Offer,
        status: int,
        headers: Mapping[str, str],
        receipt: Receipt | None,
        sent: Mapping[str, str],
    ) -> None:
        self.calls.append((operator.name, status, receipt, dict(sent)))
        if self.fail:
            raise RuntimeError("the payer broke")

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("fail", [False, True])
async def test_the_payer_learns_each_attempt_with_its_receipt(
    tmp_path: Path, sqlite_url: str, fail: bool
) -> None:
    payer = Recorder(fail)
    async with (
        run_operator(tmp_path, "down", 21) as down,
        run_operator(tmp_path, "up", 22) as up,
    ):
        down.upstream.fail_status = 500  # the operator answers 5xx: the router moves on
        settings = router_settings(
            sqlite_url, tmp_path, operators=[down.static(100), up.static(200)]
        )
        async with run_router(settings, payer=payer) as router, httpx.AsyncClient() as c:
            raw = orjson.dumps({**REQ, "mercato": {"strategy": "cheapest"}})
            resp = await c.post(f"{router}/v1/chat/completions", content=raw)
            assert resp.status_code == 200, resp.text
            receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
            (first, second) = payer.calls
            assert first[:3] == ("down", first[1], None) and first[1] >= 500
            assert first[3] == {"X-Test-Payment": "1"}
            assert second == ("up", 200, receipt, {"X-Test-Payment": "2"})

            payer.calls.clear()
            raw = orjson.dumps({**REQ, "stream": True})
            resp = await c.post(f"{router}/v1/chat/completions", content=raw,
                                headers={"X-Mercato-Operator": "up"})  # fmt: skip
            assert resp.status_code == 200, resp.text
            _, streamed = split_sse_receipt(resp.content)
            assert streamed is not None
            await wait_for(lambda: len(payer.calls) == 1)
            (only,) = payer.calls
            assert only == ("up", 200, streamed, {"X-Test-Payment": "3"})
            assert not payer.closed
        assert payer.closed
