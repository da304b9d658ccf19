"""Which upstreams may serve a request, and in which order: pure, no I/O.

Input: the offers for one model (operators' on-chain services and configured hosted
providers), each with a snapshot of what the router has observed about its upstream
(:class:`Health`), plus what the request asks for (:class:`Route`). Output: candidates
in the order the forwarder should try them (first choice, then failover).

Order of the rules, applied by :func:`rank`:

1. never an upstream whose circuit is open (a half-open one is eligible: it is the
   probe; the breaker admits one request at a time);
2. pinning (``X-Mercato-Operator`` slug, address or provider name, ``X-Mercato-Service``,
   ``X-Mercato-Blueprint``) and the ``provider`` preferences filter (``only``,
   ``ignore``, ``max_price``, ``require_tee``, zero data retention / no training, which
   admit only providers whose compliance the router's admin configured: an operator's
   backing is self-reported);
3. tiers: operators first, hosted providers as the fallback (``order`` overrides);
4. within a tier, the strategy's cost (lower is better); candidates whose cost is within
   the strategy's tolerance of the best form the *band* of near-equal choices, and the
   first pick in the band is made by the power of two choices on in-flight requests
   (no herd onto one upstream); everything else follows by cost;
5. unhealthy upstreams (failed health probe) go last, as a last resort.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Strategy = Literal["cheapest", "lowest-latency", "highest-reputation", "weighted"]
STRATEGIES: tuple[Strategy, ...] = ("cheapest", "lowest-latency", "highest-reputation", "weighted")
DEFAULT_STRATEGY: Strategy = "weighted"
OfferKind = Literal["operator", "provider"]

# Near-equal bands: relative to the best cost for raw metrics, absolute for 0-1 scores.
_RELATIVE_BAND: dict[Strategy, float] = {"cheapest": 0.02, "lowest-latency": 0.25}
_ABSOLUTE_BAND: dict[Strategy, float] = {"highest-reputation": 0.02, "weighted": 0.05}


class Circuit(Enum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"  # cooldown over: one probe request may go
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class Offer:
    """One way to serve one model: an operator's service or a configured provider."""

    kind: OfferKind
    upstream: str  # breaker and stats key: the operator's address, or "provider:<name>"
    name: str  # the operator's slug or the provider's name
    model: str
    base_url: str  # the OpenAI base URL (``.../v1``)
    price_in_per_m: int
    price_out_per_m: int
    service_id: int | None = None
    blueprint_id: int | None = None
    tee: bool = False
    zdr: bool = False
    no_train: bool = False
    compliance_verified: bool = False  # True only for providers configured by the admin
    signers: tuple[str, ...] = ()  # on-chain receipt signers (operators)
    upstream_model: str | None = None  # the provider's own name for the model

    def matches(self, ident: str) -> bool:
        """``ident`` names this offer's operator or provider (slug, address or name)."""
        low = ident.strip().lower()
        return low in (self.name.lower(), self.upstream.lower()) or (
            self.kind == "provider" and low == f"provider:{self.name.lower()}"
        )

    def unit_price(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Blended price per 1M tokens for a request of this shape."""
        total = prompt_tokens + completion_tokens
        if total <= 0:
            return float(self.price_in_per_m + self.price_out_per_m) / 2
        cost = self.price_in_per_m * prompt_tokens + self.price_out_per_m * completion_tokens
        return cost / total


@dataclass(frozen=True, slots=True)
class Health:
    """What the router has observed of one upstream (EWMA values; None: no data yet)."""

    latency_s: float | None = None
    ttft_s: float | None = None
    success_rate: float = 1.0
    uptime: float = 1.0
    feedback: float = 0.5  # client feedback, 0 (bad) to 1 (good); 0.5 without any
    inflight: int = 0
    healthy: bool = True  # the last health probe answered
    circuit: Circuit = Circuit.CLOSED

    @property
    def reputation(self) -> float:
        """0..1: success rate, uptime and feedback, weighted 0.5 / 0.3 / 0.2."""
        return 0.5 * self.success_rate + 0.3 * self.uptime + 0.2 * self.feedback


@dataclass(frozen=True, slots=True)
class Candidate:
    offer: Offer
    health: Health = field(default_factory=Health)


@dataclass(frozen=True, slots=True)
class Weights:
    price: float = 0.5
    latency: float = 0.3
    reputation: float = 0.2

    def normalized(self) -> Weights:
        total = self.price + self.latency + self.reputation
        if total <= 0:
            return Weights()
        return Weights(self.price / total, self.latency / total, self.reputation / total)


class MaxPrice(BaseModel):
    """Upper bounds in the token's base units per 1M tokens."""

    model_config = ConfigDict(extra="ignore")
    prompt: int | None = Field(default=None, ge=0)
    completion: int | None = Field(default=None, ge=0)


class ProviderPreferences(BaseModel):
    """The ``provider`` object of a request body (OpenRouter's shape, plus TEE)."""

    model_config = ConfigDict(extra="ignore")
    order: list[str] = Field(default_factory=list)
    only: list[str] | None = None
    ignore: list[str] = Field(default_factory=list)
    allow_fallbacks: bool = True
    sort: Literal["price", "latency", "throughput"] | None = None
    max_price: MaxPrice | None = None
    require_tee: bool = False
    zdr: bool = False  # zero data retention
    no_training: bool = False
    data_collection: Literal["allow", "deny"] = "allow"  # "deny": ZDR and no training

    @property
    def needs_zdr(self) -> bool:
        return self.zdr or self.data_collection == "deny"

    @property
    def needs_no_training(self) -> bool:
        return self.no_training or self.data_collection == "deny"

    @property
    def needs_verified_compliance(self) -> bool:
        return self.needs_zdr or self.needs_no_training


_NO_PREFERENCES = ProviderPreferences()


def parse_preferences(doc: object) -> ProviderPreferences:
    """The request's ``provider`` object; ValueError when malformed."""
    if doc is None:
        return _NO_PREFERENCES
    try:
        return ProviderPreferences.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"provider.{where}: {first['msg']}" if where else first["msg"]) from exc


@dataclass(frozen=True, slots=True)
class Pin:
    operator: str | None = None  # slug, address or provider name
    service_id: int | None = None
    blueprint_id: int | None = None

    @property
    def active(self) -> bool:
        return not (self.operator is None and self.service_id is None and self.blueprint_id is None)


@dataclass(frozen=True, slots=True)
class Route:
    """What one request asks of routing."""

    model: str
    strategy: Strategy = DEFAULT_STRATEGY
    preferences: ProviderPreferences = field(default_factory=ProviderPreferences)
    pin: Pin = field(default_factory=Pin)
    weights: Weights = field(default_factory=Weights)
    prompt_tokens: int = 0  # estimates, for the blended price
    completion_tokens: int = 0
    stream: bool = False

    @property
    def effective_strategy(self) -> Strategy:
        sort = self.preferences.sort
        if sort == "price":
            return "cheapest"
        if sort in ("latency", "throughput"):
            return "lowest-latency"
        return self.strategy


def admissible(c: Candidate, route: Route) -> bool:
    """The hard filters: circuit, model, pinning and the preferences' constraints."""
    o, prefs, pin = c.offer, route.preferences, route.pin
    if c.health.circuit is Circuit.OPEN or o.model != route.model:
        return False
    if pin.operator is not None and not o.matches(pin.operator):
        return False
    if pin.service_id is not None and o.service_id != pin.service_id:
        return False
    if pin.blueprint_id is not None and o.blueprint_id != pin.blueprint_id:
        return False
    if prefs.only is not None and not any(o.matches(i) for i in prefs.only):
        return False
    if any(o.matches(i) for i in prefs.ignore):
        return False
    if prefs.max_price is not None:
        mp = prefs.max_price
        if mp.prompt is not None and o.price_in_per_m > mp.prompt:
            return False
        if mp.completion is not None and o.price_out_per_m > mp.completion:
            return False
    if prefs.require_tee and not o.tee:
        return False
    if prefs.needs_verified_compliance:
        if o.kind != "provider" or not o.compliance_verified:
            return False
        if prefs.needs_zdr and not o.zdr:
            return False
        if prefs.needs_no_training and not o.no_train:
            return False
    return True


def costs(candidates: Sequence[Candidate], route: Route) -> list[float]:
    """Each candidate's cost under the route's strategy (lower is better)."""
    strategy = route.effective_strategy
    prices = [c.offer.unit_price(route.prompt_tokens, route.completion_tokens) for c in candidates]
    latencies = _latencies(candidates, route.stream)
    if strategy == "cheapest":
        return prices
    if strategy == "lowest-latency":
        return latencies
    if strategy == "highest-reputation":
        return [1.0 - c.health.reputation for c in candidates]
    w = route.weights.normalized()
    np, nl = _relative(prices), _relative(latencies)
    return [
        w.price * p + w.latency * lat + w.reputation * (1.0 - c.health.reputation)
        for c, p, lat in zip(candidates, np, nl, strict=True)
    ]


def _latencies(candidates: Sequence[Candidate], stream: bool) -> list[float]:
    """Observed latency (TTFT for streams); an upstream without data counts as instant,
    so that it is tried (explored) once rather than starved."""
    raw: list[float | None] = []
    for c in candidates:
        h = c.health
        first, second = (h.ttft_s, h.latency_s) if stream else (h.latency_s, h.ttft_s)
        raw.append(first if first is not None else second)
    return [0.0 if v is None else v for v in raw]


def _relative(values: Sequence[float]) -> list[float]:
    """0..1: how far each value is above the best, as a fraction of itself (so 100 vs
    120 is 0 vs 0.17, 5 ms vs 300 ms is 0 vs 0.98); scale-free, unlike min-max."""
    lo = min(values, default=0.0)
    return [(v - lo) / v if v > 0 else 0.0 for v in values]


def _in_band(cost: float, best: float, strategy: Strategy) -> bool:
    if strategy in _RELATIVE_BAND:
        return cost <= best * (1.0 + _RELATIVE_BAND[strategy]) + 1e-12
    return cost <= best + _ABSOLUTE_BAND[strategy] + 1e-12


def _order_tier(tier: list[Candidate], route: Route, rng: random.Random) -> list[Candidate]:
    if len(tier) <= 1:
        return list(tier)
    tier_costs = costs(tier, route)
    # Sort by cost, ties broken at random (so equal upstreams share failover load too).
    keyed = sorted(
        zip(tier_costs, [rng.random() for _ in tier], tier, strict=True), key=lambda t: (t[0], t[1])
    )
    best = keyed[0][0]
    strategy = route.effective_strategy
    band = [t for t in keyed if _in_band(t[0], best, strategy)]
    rest = [t[2] for t in keyed if not _in_band(t[0], best, strategy)]
    if len(band) >= 2:
        a, b = rng.sample(band, 2)
        first = a if (a[2].health.inflight, a[0]) <= (b[2].health.inflight, b[0]) else b
        band.remove(first)
        band.insert(0, first)
    return [t[2] for t in band] + rest


def rank(
    candidates: Sequence[Candidate], route: Route, rng: random.Random | None = None
) -> list[Candidate]:
    """The candidates that may serve ``route``, in the order to try them."""
    rng = rng or random.Random()  # noqa: S311 - load spreading, not security
    eligible = [c for c in candidates if admissible(c, route)]
    healthy = [c for c in eligible if c.health.healthy]
    sick = [c for c in eligible if not c.health.healthy]
    ordered: list[Candidate] = []
    for group in (healthy, sick):
        operators = [c for c in group if c.offer.kind == "operator"]
        providers = [c for c in group if c.offer.kind == "provider"]
        ordered += _order_tier(operators, route, rng) + _order_tier(providers, route, rng)
    prefs = route.preferences
    if prefs.order:
        head: list[Candidate] = []
        for ident in prefs.order:
            head += [c for c in ordered if c.offer.matches(ident) and c not in head]
        if not prefs.allow_fallbacks:
            return head
        return head + [c for c in ordered if c not in head]
    if not prefs.allow_fallbacks:
        return ordered[:1]
    return ordered
