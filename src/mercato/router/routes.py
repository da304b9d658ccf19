"""The OpenAI-compatible API of the router. Handlers parse, delegate and answer."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mercato.errors import InvalidRequest, MercatoError, NotFound, Unavailable
from mercato.router.credits import Hold
from mercato.router.forward import (
    ATTEMPTS_HEADER,
    WALLET_PAYMENT_HEADERS,
    Endpoint,
    OpenStream,
    RequestBodies,
    Served,
)
from mercato.router.history import RequestRecord, now_ms
from mercato.router.keys import ApiKey
from mercato.router.pricing import Estimate, offer_cost
from mercato.router.relay import RelayStream, StreamOutcome
from mercato.router.selection import (
    STRATEGIES,
    Candidate,
    Health,
    Offer,
    Pin,
    Route,
    Strategy,
    Weights,
    admissible,
    parse_preferences,
    rank,
)
from mercato.router.state import RouterState

router = APIRouter()
Headers = Mapping[str, str]  # request headers by lower-case name


def state_of(request: Request) -> RouterState:
    state: RouterState = request.app.state.router
    return state


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(doc), status_code=status, media_type="application/json", headers=headers
    )


def bearer(headers: Headers) -> str | None:
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key")


def authenticate(state: RouterState, headers: Headers) -> ApiKey | None:
    mode = state.settings.billing.auth
    if mode == "off":
        return None
    token = bearer(headers)
    if token is None and mode == "optional":
        return None
    return state.keys.authenticate(token)


PAYMENT_MODE_HEADER = "x-mercato-payment"


def wallet_payment(headers: Headers) -> dict[str, str] | None:
    """The client's own payment for the operator (its payment headers, possibly none
    when it asks for the operator's challenge with ``X-Mercato-Payment: wallet``), or
    None when the router is to bill the request in credits and pay the operator."""
    paid = {h: v for h in WALLET_PAYMENT_HEADERS if (v := headers.get(h))}
    if paid:
        return paid
    mode = (headers.get(PAYMENT_MODE_HEADER) or "").strip().lower()
    if mode == "wallet":
        return {}
    if mode not in ("", "credits"):
        raise InvalidRequest(
            "X-Mercato-Payment must be wallet or credits", code="invalid_payment_mode"
        )
    return None


def _int_header(headers: Headers, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer", code="invalid_header") from None


def build_route(state: RouterState, headers: Headers, doc: dict[str, Any], model: str) -> Route:
    routing = state.settings.routing
    opts = doc.get("mercato") or {}
    if not isinstance(opts, dict):
        raise InvalidRequest("mercato must be an object", param="mercato")
    strategy = headers.get("x-mercato-strategy") or opts.get("strategy")
    strategy = strategy or routing.default_strategy
    if strategy not in STRATEGIES:
        raise InvalidRequest(
            f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}",
            param="mercato.strategy",
            code="invalid_strategy",
        )
    w = routing.weights
    weights = Weights(w.price, w.latency, w.reputation)
    if isinstance(opts.get("weights"), dict):
        given = opts["weights"]
        try:
            weights = Weights(
                *(
                    float(given.get(k, getattr(weights, k)))
                    for k in ("price", "latency", "reputation")
                )
            )
        except (TypeError, ValueError):
            raise InvalidRequest(
                "mercato.weights must be numbers", param="mercato.weights"
            ) from None
    try:
        prefs = parse_preferences(doc.get("provider"))
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="provider", code="invalid_provider") from None
    pin = Pin(
        operator=headers.get("x-mercato-operator") or None,
        service_id=_int_header(headers, "x-mercato-service"),
        blueprint_id=_int_header(headers, "x-mercato-blueprint"),
    )
    max_tokens = doc.get("max_completion_tokens") or doc.get("max_tokens")
    completion = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
    return Route(
        model=model,
        strategy=strategy,
        preferences=prefs,
        pin=pin,
        weights=weights,
        prompt_tokens=1000,
        completion_tokens=completion or 500,
        stream=bool(doc.get("stream")),
    )


def _no_plan(candidates: list[Candidate], route: Route) -> MercatoError:
    if any(admissible(replace(c, health=Health()), route) for c in candidates):
        return Unavailable(
            "every upstream for this request has its circuit open; retry shortly",
            code="no_upstream_available",
            headers={"Retry-After": "1"},
        )
    return InvalidRequest(
        f"no upstream serves {route.model} under this request's pinning and provider preferences",
        code="no_matching_upstream",
    )


def served_headers(offer: Offer, strategy: Strategy, rid: str, attempts: int) -> dict[str, str]:
    headers = {
        "X-Mercato-Request-Id": rid,
        "X-Mercato-Served-By": offer.name,
        "X-Mercato-Upstream-Kind": offer.kind,
        "X-Mercato-Price": f"in={offer.price_in_per_m};out={offer.price_out_per_m};per=1000000",
        "X-Mercato-Strategy": strategy,
        "X-Mercato-Attempts": str(attempts),
    }
    if offer.kind == "operator":
        headers["X-Mercato-Operator-Address"] = offer.upstream
    if offer.service_id is not None:
        headers["X-Mercato-Service"] = str(offer.service_id)
    return headers


async def handle(
    st: RouterState, endpoint: Endpoint, headers: Headers, raw: bytes, started: float
) -> Response:
    """One inference request (see asgi.py for how it arrives): ``headers`` with
    lower-case names, ``raw`` the whole body, ``started`` its monotonic arrival time."""
    wallet = wallet_payment(headers)
    key = authenticate(st, headers) if wallet is None else None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(doc, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required", param="model", code="invalid_parameter")
    offers = st.table.offers(model)
    if not offers:
        raise NotFound(f"The model `{model}` does not exist", code="model_not_found", param="model")
    route = build_route(st, headers, doc, model)
    if wallet is not None:
        offers = [o for o in offers if o.kind == "operator"]  # only operators take wallets
        if wallet and route.pin.operator is None:
            raise InvalidRequest(
                "a request paid with the client's own payment must pin its operator with "
                "X-Mercato-Operator (the payment names one operator)",
                code="operator_pin_required",
            )
    candidates = st.stats.candidates(offers)
    plan = rank(candidates, route, st.rng)
    if wallet:
        plan = plan[:1]  # the payment is for that operator: no failover
    if not plan:
        err = _no_plan(candidates, route)
        st.metrics.refused.labels(err.code).inc()
        raise err
    estimate = Estimate(
        prompt_tokens=len(raw),
        completion_tokens=route.completion_tokens
        if doc.get("max_tokens") or doc.get("max_completion_tokens")
        else st.settings.billing.default_max_tokens,
    )
    idem = headers.get("idempotency-key")
    rid = f"{key.key_id}:{idem}" if (key and idem) else os.urandom(16).hex()
    hold: Hold | None = None
    if key is not None:
        tried = [c.offer for c in plan[: st.settings.routing.max_retries + 1]]
        try:
            hold = st.credits.hold(key.key_id, rid, estimate.max_cost(tried))
        except MercatoError as err:
            st.metrics.refused.labels(err.code).inc()
            raise
    call = _Call(st, endpoint, route, rid, key, hold, started, raw, wallet is not None)
    bodies = RequestBodies(raw, doc)
    try:
        if route.stream:
            opened = await st.forwarder.open_stream(endpoint, plan, bodies, estimate, wallet)
        else:
            opened = await st.forwarder.complete(endpoint, plan, bodies, estimate, wallet)
    except MercatoError as err:
        call.failed(err.status, attempts=int(err.headers.get(ATTEMPTS_HEADER, "0")))
        raise
    if isinstance(opened, OpenStream):
        return call.stream(opened)
    return await call.answer(opened)


class _Call:
    """One request after routing: billing, history, metrics."""

    def __init__(
        self,
        st: RouterState,
        endpoint: Endpoint,
        route: Route,
        rid: str,
        key: ApiKey | None,
        hold: Hold | None,
        started: float,
        raw: bytes,
        wallet: bool = False,
    ) -> None:
        self.st, self.endpoint, self.route, self.rid = st, endpoint, route, rid
        self.key, self.hold, self.started, self.raw = key, hold, started, raw
        self.wallet = wallet  # the client pays the operator itself: no credits

    def headers(self, offer: Offer, attempts: int) -> dict[str, str]:
        headers = served_headers(offer, self.route.effective_strategy, self.rid, attempts)
        if self.wallet:
            headers["X-Mercato-Payment"] = "wallet"
            headers["X-Mercato-Operator"] = offer.upstream
        return headers

    def record(
        self,
        offer: Offer | None,
        status: int,
        attempts: int,
        prompt: int = 0,
        completion: int = 0,
        cost: int = 0,
        ttft: float | None = None,
        receipt_id: str | None = None,
        signer: str | None = None,
    ) -> RequestRecord:
        latency = time.monotonic() - self.started
        self.st.metrics.request_done(
            self.endpoint, status, offer.kind if offer else "none", self.route.stream, latency
        )
        return RequestRecord(
            request_id=self.rid,
            key_id=self.key.key_id if self.key else None,
            payer=None,
            model=self.route.model,
            endpoint=self.endpoint,
            stream=self.route.stream,
            strategy=self.route.effective_strategy,
            upstream_kind=offer.kind if offer else None,
            upstream=offer.upstream if offer else None,
            upstream_name=offer.name if offer else None,
            service_id=offer.service_id if offer else None,
            status=status,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=cost,
            latency_ms=latency * 1000,
            ttft_ms=ttft * 1000 if ttft is not None else None,
            attempts=attempts,
            receipt_id=receipt_id,
            receipt_signer=signer,
            created_at=now_ms(),
        )

    def _attempt_metrics(self, attempts: list[Any]) -> None:
        for a in attempts:
            self.st.metrics.attempt(a.name, a.outcome)
        if len(attempts) > 1:
            self.st.metrics.failovers.inc()

    def failed(self, status: int, attempts: int) -> None:
        if self.hold is not None:
            self.st.credits.release(self.hold)
        self.st.writer.add_history(self.record(None, status, attempts).row())

    async def _charge(self, record: RequestRecord) -> int:
        if self.hold is None:
            self.st.writer.add_history(record.row())
            return 0 if self.wallet else record.cost  # a wallet paid the operator itself
        charged = await self.st.credits.settle(self.hold, record.cost, record.row())
        self.st.metrics.charged.inc(charged)
        return charged

    async def answer(self, served: Served) -> Response:
        offer = served.offer
        self._attempt_metrics(served.attempts)
        headers = self.headers(offer, len(served.attempts))
        headers.update(served.headers)
        if served.status != 200:
            self.failed(served.status, len(served.attempts))
            return Response(served.body, status_code=served.status, headers=headers)
        prompt, completion = _usage_of(served.body, len(self.raw))
        cost = offer_cost(offer, prompt, completion)
        receipt = served.receipt
        record = self.record(
            offer,
            200,
            len(served.attempts),
            prompt,
            completion,
            cost,
            None,
            receipt.id if receipt else None,
            receipt.signing_address if receipt else None,
        )
        charged = await self._charge(record)
        headers["X-Mercato-Cost"] = str(charged)
        return Response(served.body, status_code=200, headers=headers)

    def stream(self, opened: OpenStream) -> Response:
        offer = opened.offer
        headers = self.headers(offer, len(opened.attempts) + 1)
        headers.update(opened.headers)

        async def finish(outcome: StreamOutcome) -> bytes:
            self._attempt_metrics(opened.attempts)
            if not outcome.complete:
                self.failed(
                    502 if outcome.reason != "client_disconnected" else 499,
                    len(opened.attempts) + 1,
                )
                return b""
            if outcome.usage:
                prompt = outcome.usage["prompt_tokens"]
                completion = outcome.usage["completion_tokens"]
            else:  # no usage in the stream: one token per content event, prompt bytes / 4
                prompt, completion = max(1, len(self.raw) // 4), outcome.data_events
            cost = offer_cost(offer, prompt, completion)
            r = outcome.receipt
            record = self.record(
                offer,
                200,
                len(opened.attempts) + 1,
                prompt,
                completion,
                cost,
                opened.ttft_s,
                r.id if r else None,
                r.signing_address if r else None,
            )
            charged = await self._charge(record)
            return b": mercato-cost " + orjson.dumps({"cost": charged, "id": self.rid}) + b"\n\n"

        return RelayStream(opened, self.raw, headers, finish)


def _usage_of(body: bytes, request_len: int) -> tuple[int, int]:
    try:
        usage = orjson.loads(body).get("usage")
        return int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return max(1, request_len // 4), max(1, len(body) // 4)


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    st = state_of(request)
    data = []
    for model, offers in sorted(st.table.by_model.items()):
        data.append(
            {
                "id": model,
                "object": "model",
                "created": st.started_at,
                "owned_by": "mercato",
                "offers": [
                    {
                        "kind": o.kind,
                        "name": o.name,
                        "upstream": o.upstream,
                        "service_id": o.service_id,
                        "price_in_per_m": o.price_in_per_m,
                        "price_out_per_m": o.price_out_per_m,
                        "tee": o.tee,
                        "zdr": o.zdr,
                        "no_train": o.no_train,
                    }
                    for o in offers
                ],
            }
        )
    return json_response({"object": "list", "data": data})


@router.get("/health")
async def health(request: Request) -> Response:
    st = state_of(request)
    sync = st.discovery.status() if st.discovery is not None else None
    doc = {
        "status": "ok",
        "offers": len(st.table.all()),
        "models": sorted(st.table.by_model),
        "discovery": sync,
    }
    return json_response(doc)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    st = state_of(request)
    for upstream, s in st.stats.upstreams.items():
        st.metrics.circuit.labels(upstream).set(0 if s.breaker.is_closed else 1)
        st.metrics.circuit_opens.labels(upstream).set(s.breaker.opens)
    st.metrics.writer_queue.set(st.writer.queued)
    st.metrics.history_dropped.set(st.writer.dropped)
    # a payer that settles (network/router_payer.py) counts its spend settlements
    counts = getattr(st.forwarder.payer, "settlement_counts", None)
    for outcome, n in (counts or {}).items():
        st.metrics.settlements.labels(outcome).set(n)
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)
