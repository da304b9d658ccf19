"""A fake dstack guest agent (aiohttp app) for the unix-socket tests.

Answers ``/GetQuote`` and ``/Info`` (and the legacy ``/prpc/Tappd.*``) like the real
agent: from recorded answers when the report_data matches one, otherwise with a
synthetic quote. ``mode`` makes it misbehave for the error tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .attest_synthetic import SYNTHETIC_EVENT_LOG, synthetic_tdx_quote


@dataclass
class FakeAgent:
    """What the fake agent received, and how it should misbehave next."""

    socket_path: str
    recorded: dict[str, dict[str, Any]]
    info: dict[str, Any]
    requests: list[tuple[str, Any]] = field(default_factory=list)
    mode: str = "normal"  # normal | http_error | bad_json | bad_event_log | wrong_quote


def agent_app(agent: FakeAgent) -> web.Application:
    async def get_quote(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        agent.requests.append((request.path, body))
        if agent.mode == "http_error":
            return web.json_response({"error": "failed to get quote: tdx device busy"}, status=400)
        if agent.mode == "bad_json":
            return web.Response(text='{"quote": "0400', content_type="application/json")
        tappd = request.path.startswith("/prpc/")
        if tappd and body.get("hash_algorithm") != "raw":
            return web.json_response({"error": "test agent only does raw"}, status=400)
        try:
            report_data = bytes.fromhex(body["report_data"])
        except (KeyError, ValueError):
            return web.json_response({"error": "invalid report_data"}, status=400)
        if len(report_data) > 64:
            return web.json_response({"error": "report_data is too long"}, status=400)
        report_data = report_data.ljust(64, b"\x00")
        recorded = agent.recorded.get(report_data.hex())
        if recorded is not None:
            answer = dict(recorded)
        else:
            answer = {
                "quote": synthetic_tdx_quote(report_data).hex(),
                "event_log": json.dumps(SYNTHETIC_EVENT_LOG),
                "report_data": report_data.hex(),
                "vm_config": '{"spec_version":1,"cpu_count":2}',
            }
        if agent.mode == "bad_event_log":
            answer["event_log"] = "[{not json"
        if agent.mode == "wrong_quote":
            answer["quote"] = synthetic_tdx_quote(bytes(64)).hex()
            answer.pop("report_data", None)
        if tappd:  # the tappd agent answers {quote, event_log} only
            answer = {"quote": answer["quote"], "event_log": answer["event_log"]}
        return web.json_response(answer)

    async def info(request: web.Request) -> web.StreamResponse:
        agent.requests.append((request.path, await request.json()))
        return web.json_response(agent.info)

    app = web.Application()
    app.router.add_post("/GetQuote", get_quote)
    app.router.add_post("/Info", info)
    app.router.add_post("/prpc/Tappd.TdxQuote", get_quote)
    app.router.add_post("/prpc/Tappd.Info", info)
    return app
