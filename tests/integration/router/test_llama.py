"""One router test with the real model: a llama-cpp operator process behind the router."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from openai import AsyncOpenAI

from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, split_sse_receipt, verify_receipt
from tests.integration.conftest import MODEL, OperatorProcess

from .conftest import router_settings, run_router

pytestmark = [pytest.mark.model, pytest.mark.slow]


async def test_openai_client_through_the_router_to_a_llama_operator(
    llama_operator: OperatorProcess, tmp_path: Path, sqlite_url: str
) -> None:
    async with httpx.AsyncClient() as c:
        address = (await c.get(f"{llama_operator.url}/health")).json()["signing_address"]
    op = {
        "address": address,
        "slug": "llama",
        "endpoint": llama_operator.url,
        "signers": [address],
        "models": [MODEL],
        "price_in_per_m": 1_000_000,
        "price_out_per_m": 2_000_000,
    }
    settings = router_settings(
        sqlite_url, tmp_path, operators=[op], routing={"attempt_timeout_s": 120.0}
    )
    async with run_router(settings) as router:
        client = AsyncOpenAI(base_url=f"{router}/v1", api_key="unused", max_retries=0)
        messages = [{"role": "user", "content": "Say hello."}]
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=messages,
            max_tokens=12,
            temperature=0,  # type: ignore[arg-type]
        )
        reply = raw.parse()
        assert reply.choices[0].message.content
        assert raw.headers["x-mercato-served-by"] == "llama"
        usage = reply.usage
        assert usage is not None
        cost = -(
            -(usage.prompt_tokens * 1_000_000 + usage.completion_tokens * 2_000_000) // 1_000_000
        )
        assert int(raw.headers["x-mercato-cost"]) == cost
        assert Receipt.from_json(raw.headers[RECEIPT_HEADER]).signing_address == address
        body = orjson.dumps(
            {
                "model": MODEL,
                "messages": messages,
                "max_tokens": 12,
                "stream": True,
                "temperature": 0,
            }
        )
        async with httpx.AsyncClient(timeout=60) as c:
            resp = await c.post(f"{router}/v1/chat/completions", content=body)
        signed, receipt = split_sse_receipt(resp.content)
        assert receipt is not None and verify_receipt(receipt, body, signed).ok
        assert receipt.signing_address == address
        await client.close()
