"""Client feedback: scores from the caller only, once per answer, kept across restarts,
and fed into the operator's reputation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.helpers import free_port

from .conftest import ADMIN, MODEL, admin_key, router_settings, run_operator, run_router

REQ = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def _operator_feedback(c: httpx.AsyncClient, router: str, slug: str) -> float:
    r = await c.get(f"{router}/admin/operators", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["data"]
    (row,) = [o for o in rows if o["name"] == slug]
    return float(row["scores"]["feedback"])


async def test_feedback_from_the_caller_once_and_kept(tmp_path: Path, db_url: str) -> None:
    async with run_operator(tmp_path, "meh", 91) as op:
        down = {
            "address": "0x" + "ab" * 20,
            "slug": "down",
            "endpoint": f"http://127.0.0.1:{free_port()}",
            "signers": ["0x" + "ab" * 20],
            "models": [MODEL],
            "price_in_per_m": 1,
            "price_out_per_m": 1,
        }
        settings = router_settings(
            db_url, tmp_path, operators=[op.static(100), down], billing={"auth": "required"}
        )
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            alice_key = await admin_key(c, router, 10**6)
            alice = {"Authorization": f"Bearer {alice_key['key']}"}
            bob = {"Authorization": f"Bearer {(await admin_key(c, router, 10**6))['key']}"}
            pinned = {**alice, "X-Mercato-Operator": "meh"}
            r = await c.post(f"{router}/v1/chat/completions", json=REQ, headers=pinned)
            assert r.status_code == 200, r.text
            rid = r.headers["x-mercato-request-id"]
            assert await _operator_feedback(c, router, "meh") == 0.5  # none yet

            fb = f"{router}/v1/feedback"
            given = await c.post(fb, json={"request_id": rid, "score": 0}, headers=alice)
            assert given.status_code == 200, given.text
            assert given.json()["upstream"].lower() == op.address.lower()
            assert given.json()["upstream_feedback"] < 0.5
            assert await _operator_feedback(c, router, "meh") < 0.5

            for body, who, status, code in [
                ({"request_id": rid, "score": 1}, alice, 409, "feedback_exists"),
                ({"request_id": rid, "score": 1}, bob, 404, "unknown_request"),
                ({"request_id": "nope", "score": 1}, alice, 404, "unknown_request"),
                ({"request_id": rid, "score": 1.5}, alice, 400, "invalid_parameter"),
                ({"request_id": rid, "score": True}, alice, 400, "invalid_parameter"),
                ({"score": 1}, alice, 400, "invalid_parameter"),
                ({"request_id": rid, "score": 1}, {}, 401, "invalid_api_key"),
            ]:
                r = await c.post(fb, json=body, headers=who)
                assert r.status_code == status, (body, r.text)
                assert r.json()["error"]["code"] == code, (body, r.text)

            # A request that no upstream answered has nothing to score.
            failed = {**alice, "X-Mercato-Operator": "down", "Idempotency-Key": "f1"}
            r = await c.post(f"{router}/v1/chat/completions", json=REQ, headers=failed)
            assert r.status_code >= 500
            failed_id = f"{alice_key['key_id']}:f1"
            r = await c.post(fb, json={"request_id": failed_id, "score": 1}, headers=alice)
            assert r.status_code == 400 and r.json()["error"]["code"] == "request_not_answered"

        # A restarted router (or another replica) starts from the stored scores.
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            assert await _operator_feedback(c, router, "meh") < 0.5
