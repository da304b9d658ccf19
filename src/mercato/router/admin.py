"""Admin API (bearer admin token) and a key holder's own history and analytics."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from mercato.errors import AuthenticationFailed, InvalidRequest, NotFound
from mercato.router.feedback import parse_feedback
from mercato.router.keys import ApiKey
from mercato.router.routes import authenticate, bearer, json_response, state_of
from mercato.router.state import RouterState

router = APIRouter()


def require_admin(request: Request) -> RouterState:
    st = state_of(request)
    configured = st.settings.billing.admin_token
    token = bearer(request.headers) or ""
    if configured is None:
        raise NotFound(
            "the admin API is disabled (no admin token configured)", code="admin_disabled"
        )
    if not secrets.compare_digest(token.encode(), configured.get_secret_value().encode()):
        raise AuthenticationFailed("invalid admin token", code="invalid_admin_token")
    return st


def require_key(request: Request) -> tuple[RouterState, ApiKey]:
    st = state_of(request)
    return st, st.keys.authenticate(bearer(request.headers))


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"invalid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(doc, dict):
        raise InvalidRequest("body must be a JSON object", code="invalid_json")
    return doc


def _key_doc(st: RouterState, key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
        "balance": st.credits.balance(key.key_id),
    }


def _amount(doc: dict[str, Any], field: str) -> int:
    value = doc.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidRequest(f"{field} must be a positive integer (base units)", param=field)
    return value


@router.post("/admin/keys")
async def create_key(request: Request) -> Response:
    st = require_admin(request)
    doc = await _json(request)
    token, key = await st.keys.create(str(doc.get("name") or ""))
    if doc.get("credits"):
        await st.credits.topup(key.key_id, _amount(doc, "credits"), f"create:{key.key_id}")
    return json_response({"key": token, **_key_doc(st, key)}, 201)


@router.get("/admin/keys")
async def list_keys(request: Request) -> Response:
    st = require_admin(request)
    return json_response({"data": [_key_doc(st, k) for k in st.keys.all()]})


@router.delete("/admin/keys/{key_id}")
async def revoke_key(request: Request, key_id: str) -> Response:
    st = require_admin(request)
    return json_response(_key_doc(st, await st.keys.revoke(key_id)))


@router.post("/admin/keys/{key_id}/credits")
async def top_up(request: Request, key_id: str) -> Response:
    st = require_admin(request)
    key = st.keys.get(key_id)
    if key is None:
        raise NotFound(f"no API key {key_id!r}", code="key_not_found")
    doc = await _json(request)
    topup_id = str(doc.get("topup_id") or request.headers.get("idempotency-key") or uuid.uuid4())
    await st.credits.topup(key_id, _amount(doc, "amount"), f"{key_id}:{topup_id}")
    return json_response(_key_doc(st, key))


@router.get("/admin/operators")
async def operators(request: Request) -> Response:
    st = require_admin(request)
    out = []
    for offer in st.table.all():
        s = st.stats.get(offer.upstream)
        h = s.health()
        out.append(
            {
                "kind": offer.kind,
                "name": offer.name,
                "upstream": offer.upstream,
                "model": offer.model,
                "service_id": offer.service_id,
                "blueprint_id": offer.blueprint_id,
                "base_url": offer.base_url,
                "price_in_per_m": offer.price_in_per_m,
                "price_out_per_m": offer.price_out_per_m,
                "tee": offer.tee,
                "zdr": offer.zdr,
                "no_train": offer.no_train,
                "signers": list(offer.signers),
                "scores": {
                    "reputation": h.reputation,
                    "success_rate": h.success_rate,
                    "uptime": h.uptime,
                    "feedback": h.feedback,
                    "latency_s": h.latency_s,
                    "ttft_s": h.ttft_s,
                    "inflight": h.inflight,
                    "healthy": h.healthy,
                },
                "circuit": h.circuit.value,
                "circuit_opens": s.breaker.opens,
                "requests": s.requests,
                "failures": s.failures,
            }
        )
    return json_response({"data": out})


@router.get("/admin/history")
async def admin_history(
    request: Request, key_id: str | None = None, limit: int = 100, before: int | None = None
) -> Response:
    st = require_admin(request)
    rows = await st.history.recent(key_id=key_id, limit=min(limit, 1000), before=before)
    return json_response({"data": rows})


@router.get("/admin/analytics")
async def admin_analytics(
    request: Request, key_id: str | None = None, since: int | None = None
) -> Response:
    st = require_admin(request)
    return json_response(await st.history.analytics(key_id=key_id, since=since))


@router.get("/v1/history")
async def my_history(request: Request, limit: int = 100, before: int | None = None) -> Response:
    st, key = require_key(request)
    rows = await st.history.recent(key_id=key.key_id, limit=min(limit, 1000), before=before)
    return json_response({"data": rows})


@router.get("/v1/analytics")
async def my_analytics(request: Request, since: int | None = None) -> Response:
    st, key = require_key(request)
    doc = await st.history.analytics(key_id=key.key_id, since=since)
    return json_response({**doc, "balance": st.credits.balance(key.key_id)})


@router.get("/v1/credits")
async def my_credits(request: Request) -> Response:
    st, key = require_key(request)
    return json_response({"key_id": key.key_id, "balance": st.credits.balance(key.key_id)})


@router.post("/v1/feedback")
async def give_feedback(request: Request) -> Response:
    """Score an answer (see feedback.py); the caller must be the one who asked."""
    st = state_of(request)
    key = authenticate(st, request.headers)
    request_id, score = parse_feedback(await _json(request))
    return json_response(await st.feedback.give(key.key_id if key else None, request_id, score))
