"""Pure selection: strategies, preferences, pinning, tiers and load spreading."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.router.selection import (
    STRATEGIES,
    Candidate,
    Circuit,
    Health,
    Offer,
    Pin,
    ProviderPreferences,
    Route,
    parse_preferences,
    rank,
)

MODEL = "m"


def op(name: str, price: int, **kw: object) -> Offer:
    fields: dict[str, object] = {
        "kind": "operator",
        "upstream": f"0x{name}",
        "name": name,
        "model": MODEL,
        "base_url": f"http://{name}",
        "price_in_per_m": price,
        "price_out_per_m": price,
        "service_id": kw.pop("service_id", hash(name) % 1000),
        "blueprint_id": 1,
    }
    fields.update(kw)
    return Offer(**fields)  # type: ignore[arg-type]


def prov(name: str, price: int, **kw: object) -> Offer:
    fields: dict[str, object] = {
        "kind": "provider",
        "upstream": f"provider:{name}",
        "name": name,
        "model": MODEL,
        "base_url": f"http://{name}",
        "price_in_per_m": price,
        "price_out_per_m": price,
        "compliance_verified": True,
    }
    fields.update(kw)
    return Offer(**fields)  # type: ignore[arg-type]


def names(cands: list[Candidate]) -> list[str]:
    return [c.offer.name for c in cands]


CHEAP, MID, DEAR = op("cheap", 100), op("mid", 200), op("dear", 300)
FAST, SLOW = Health(latency_s=0.01), Health(latency_s=1.0)
RNG = random.Random(7)


def test_cheapest_orders_by_price() -> None:
    cands = [Candidate(DEAR), Candidate(CHEAP), Candidate(MID)]
    assert names(rank(cands, Route(MODEL, "cheapest"), RNG)) == ["cheap", "mid", "dear"]


def test_lowest_latency_prefers_the_fast_one() -> None:
    cands = [Candidate(CHEAP, SLOW), Candidate(DEAR, FAST), Candidate(MID, Health(latency_s=0.5))]
    assert names(rank(cands, Route(MODEL, "lowest-latency"), RNG)) == ["dear", "mid", "cheap"]


def test_unknown_latency_is_explored_not_starved() -> None:
    cands = [Candidate(CHEAP, SLOW), Candidate(MID)]  # mid has no data yet
    assert names(rank(cands, Route(MODEL, "lowest-latency"), RNG))[0] == "mid"


def test_highest_reputation() -> None:
    bad = Health(success_rate=0.5, uptime=0.9)
    cands = [Candidate(CHEAP, bad), Candidate(DEAR, Health(success_rate=1.0))]
    assert names(rank(cands, Route(MODEL, "highest-reputation"), RNG)) == ["dear", "cheap"]


def test_weighted_balances_price_and_latency() -> None:
    cands = [Candidate(CHEAP, SLOW), Candidate(MID, FAST), Candidate(DEAR, FAST)]
    assert names(rank(cands, Route(MODEL, "weighted"), RNG))[-1] == "dear"
    from mercato.router.selection import Weights

    price_only = Route(MODEL, "weighted", weights=Weights(1, 0, 0))
    latency_only = Route(MODEL, "weighted", weights=Weights(0, 1, 0))
    assert names(rank(cands, price_only, RNG))[0] == "cheap"
    assert names(rank(cands, latency_only, RNG))[0] in ("mid", "dear")


def test_open_circuit_is_skipped_half_open_is_the_probe() -> None:
    cands = [Candidate(CHEAP, Health(circuit=Circuit.OPEN)), Candidate(MID)]
    assert names(rank(cands, Route(MODEL, "cheapest"), RNG)) == ["mid"]
    cands = [Candidate(CHEAP, Health(circuit=Circuit.HALF_OPEN)), Candidate(MID)]
    assert names(rank(cands, Route(MODEL, "cheapest"), RNG)) == ["cheap", "mid"]


def test_pinning() -> None:
    cands = [Candidate(CHEAP), Candidate(MID), Candidate(DEAR)]
    assert names(rank(cands, Route(MODEL, pin=Pin(operator="DEAR")), RNG)) == ["dear"]
    assert names(rank(cands, Route(MODEL, pin=Pin(operator="0xmid")), RNG)) == ["mid"]
    sid = CHEAP.service_id
    assert names(rank(cands, Route(MODEL, pin=Pin(service_id=sid)), RNG)) == ["cheap"]
    assert rank(cands, Route(MODEL, pin=Pin(blueprint_id=9)), RNG) == []


def test_operators_first_providers_as_fallback() -> None:
    cands = [Candidate(prov("p", 1)), Candidate(DEAR), Candidate(CHEAP)]
    assert names(rank(cands, Route(MODEL, "cheapest"), RNG)) == ["cheap", "dear", "p"]


def test_zero_data_retention_goes_only_to_verified_providers() -> None:
    zdr = prov("z", 50, zdr=True, no_train=True)
    unverified = prov("u", 10, zdr=True, no_train=True, compliance_verified=False)
    plain = prov("plain", 1)
    cands = [
        Candidate(op("o", 1, zdr=True, no_train=True)),
        Candidate(zdr),
        Candidate(unverified),
        Candidate(plain),
    ]
    for prefs in ({"zdr": True}, {"data_collection": "deny"}, {"no_training": True}):
        route = Route(MODEL, preferences=parse_preferences(prefs))
        assert names(rank(cands, route, RNG)) == ["z"], prefs


def test_preferences_order_only_ignore_max_price_tee() -> None:
    cands = [
        Candidate(CHEAP, SLOW),
        Candidate(MID, FAST),
        Candidate(op("tee", 250, tee=True), SLOW),
    ]
    p = parse_preferences
    route = Route(MODEL, "cheapest", preferences=p({"order": ["tee", "mid"]}))
    assert names(rank(cands, route, RNG)) == ["tee", "mid", "cheap"]
    route = Route(MODEL, preferences=p({"order": ["tee"], "allow_fallbacks": False}))
    assert names(rank(cands, route, RNG)) == ["tee"]
    route = Route(MODEL, "cheapest", preferences=p({"only": ["mid", "tee"]}))
    assert names(rank(cands, route, RNG)) == ["mid", "tee"]
    route = Route(MODEL, "cheapest", preferences=p({"ignore": ["cheap"]}))
    assert names(rank(cands, route, RNG)) == ["mid", "tee"]
    route = Route(MODEL, "cheapest", preferences=p({"max_price": {"prompt": 200}}))
    assert names(rank(cands, route, RNG)) == ["cheap", "mid"]
    route = Route(MODEL, preferences=p({"require_tee": True}))
    assert names(rank(cands, route, RNG)) == ["tee"]
    route = Route(MODEL, "highest-reputation", preferences=p({"sort": "latency"}))
    assert names(rank(cands, route, RNG))[0] == "mid"
    route = Route(MODEL, "lowest-latency", preferences=p({"sort": "price"}))
    assert names(rank(cands, route, RNG))[0] == "cheap"


def test_malformed_preferences() -> None:
    with pytest.raises(ValueError, match=r"provider\.sort"):
        parse_preferences({"sort": "random"})
    assert parse_preferences(None) == ProviderPreferences()
    assert parse_preferences({"quantizations": ["fp8"]}).allow_fallbacks  # unknown: ignored


def test_load_spreads_across_equal_upstreams() -> None:
    cands = [Candidate(op(f"o{i}", 100), Health(latency_s=0.01)) for i in range(4)]
    rng = random.Random(1)
    firsts = Counter(names(rank(cands, Route(MODEL), rng))[0] for _ in range(2000))
    assert len(firsts) == 4 and min(firsts.values()) > 350, firsts


def test_power_of_two_choices_avoids_the_busy_upstream() -> None:
    busy = Candidate(op("busy", 100), Health(inflight=50))
    idle = [Candidate(op(f"i{i}", 100)) for i in range(3)]
    rng = random.Random(2)
    firsts = Counter(names(rank([busy, *idle], Route(MODEL), rng))[0] for _ in range(1000))
    assert firsts["busy"] == 0


def test_unhealthy_goes_last() -> None:
    cands = [Candidate(CHEAP, Health(healthy=False)), Candidate(DEAR)]
    assert names(rank(cands, Route(MODEL, "cheapest"), RNG)) == ["dear", "cheap"]


# --- properties ----------------------------------------------------------------------

offers = st.builds(
    lambda i, kind, pin, pout, tee, zdr, nt, ver: Offer(
        kind=kind,
        upstream=f"u{i}",
        name=f"n{i}",
        model=MODEL,
        base_url="http://x",
        price_in_per_m=pin,
        price_out_per_m=pout,
        service_id=i,
        blueprint_id=i % 3,
        tee=tee,
        zdr=zdr,
        no_train=nt,
        compliance_verified=ver and kind == "provider",
    ),
    st.integers(0, 30),
    st.sampled_from(["operator", "provider"]),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
healths = st.builds(
    Health,
    latency_s=st.none() | st.floats(0, 10),
    ttft_s=st.none() | st.floats(0, 10),
    success_rate=st.floats(0, 1),
    uptime=st.floats(0, 1),
    inflight=st.integers(0, 100),
    healthy=st.booleans(),
    circuit=st.sampled_from(list(Circuit)),
)
candidates = st.lists(st.builds(Candidate, offers, healths), max_size=12)
prefs = st.builds(
    lambda only, ignore, mp, mc, tee, zdr, fb: ProviderPreferences(
        only=only,
        ignore=ignore,
        allow_fallbacks=fb,
        require_tee=tee,
        zdr=zdr,
        max_price={"prompt": mp, "completion": mc},
    ),
    st.none() | st.lists(st.sampled_from([f"n{i}" for i in range(30)]), max_size=5),
    st.lists(st.sampled_from([f"u{i}" for i in range(30)]), max_size=5),
    st.none() | st.integers(0, 10**6),
    st.none() | st.integers(0, 10**6),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
pins = st.builds(
    Pin,
    operator=st.none() | st.sampled_from([f"n{i}" for i in range(30)]),
    service_id=st.none() | st.integers(0, 30),
    blueprint_id=st.none() | st.integers(0, 2),
)


@settings(max_examples=300, deadline=None)
@given(candidates, prefs, pins, st.sampled_from(STRATEGIES), st.integers(0, 2**32))
def test_rank_properties(
    cands: list[Candidate], p: ProviderPreferences, pin: Pin, strategy: str, seed: int
) -> None:
    route = Route(MODEL, strategy, preferences=p, pin=pin)  # type: ignore[arg-type]
    out = rank(cands, route, random.Random(seed))
    assert len(out) == len({id(c) for c in out})  # no duplicates
    assert all(any(c is x for x in cands) for c in out)  # only given candidates
    for c in out:
        o = c.offer
        assert c.health.circuit is not Circuit.OPEN
        if pin.operator is not None:
            assert o.matches(pin.operator)
        if pin.service_id is not None:
            assert o.service_id == pin.service_id
        if pin.blueprint_id is not None:
            assert o.blueprint_id == pin.blueprint_id
        mp = p.max_price
        assert mp is not None
        assert mp.prompt is None or o.price_in_per_m <= mp.prompt
        assert mp.completion is None or o.price_out_per_m <= mp.completion
        if p.zdr:
            assert o.kind == "provider" and o.compliance_verified and o.zdr
        if p.require_tee:
            assert o.tee
        if p.only is not None:
            assert o.name in p.only
        assert o.upstream not in p.ignore
    if not p.allow_fallbacks:
        assert len(out) <= 1
    # healthy before sick; within each, operators before providers
    keys = [(not c.health.healthy, c.offer.kind == "provider") for c in out]
    assert keys == sorted(keys)


@settings(max_examples=200, deadline=None)
@given(candidates, st.integers(0, 2**32))
def test_cheapest_first_is_within_the_band(cands: list[Candidate], seed: int) -> None:
    out = rank(cands, Route(MODEL, "cheapest"), random.Random(seed))
    if not out:
        return
    first = out[0]
    tier = [
        c
        for c in out
        if c.health.healthy == first.health.healthy and c.offer.kind == first.offer.kind
    ]
    best = min(c.offer.unit_price(0, 0) for c in tier)
    assert first.offer.unit_price(0, 0) <= best * 1.02 + 1e-9
