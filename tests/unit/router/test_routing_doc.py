"""docs/protocols/routing.md's examples, recomputed by the code."""

from __future__ import annotations

import json

from mercato.router.credits import Hold, request_journals
from mercato.router.keys import split_key
from mercato.router.pricing import Estimate, cost
from mercato.router.selection import Offer, parse_preferences
from tests.helpers import doc_blocks

DOC = doc_blocks("routing.md", "routing")


def test_request_example_parses() -> None:
    doc = json.loads(DOC["request"])
    prefs = parse_preferences(doc["provider"])
    assert prefs.order == ["alpha"] and prefs.max_price is not None
    assert prefs.max_price.prompt == 200000 and not prefs.needs_verified_compliance
    assert doc["mercato"]["strategy"] == "weighted"


def test_cost_hold_and_journals() -> None:
    ex = json.loads(DOC["cost"])
    assert cost(ex["prompt_tokens"], ex["completion_tokens"], ex["price_in_per_m"],
                ex["price_out_per_m"]) == ex["cost"]  # fmt: skip
    offer = Offer("operator", "0x1", "alpha", "m", "http://x/v1", ex["price_in_per_m"],
                  ex["price_out_per_m"])  # fmt: skip
    assert Estimate(ex["request_bytes"], ex["max_tokens"]).max_cost([offer]) == ex["hold"]
    journals = request_journals(Hold("k1", "r1", ex["hold"]), ex["cost"])
    got = [{"tx_id": j.tx_id, "kind": j.kind, "lines": [list(x) for x in j.lines]}
           for j in journals]  # fmt: skip
    assert got == json.loads(DOC["journals"])


def test_key_format_and_headers() -> None:
    parts = split_key(DOC["key"].strip())
    assert parts is not None and parts[0] == "0123456789abcdef"
    assert split_key("sk-short") is None and split_key("pk-0123456789abcdef-x") is None
    names = [line.split(":")[0] for line in DOC["headers"].splitlines()]
    assert "X-Mercato-Served-By" in names and "X-Mercato-Receipt" in names
    tail = DOC["stream-tail"]
    assert tail.startswith("data: [DONE]") and ": mercato-cost " in tail


def test_rounding_is_up_once_per_request() -> None:
    assert cost(1, 0, 1, 0) == 1  # 1e-6 of a unit rounds up to 1
    assert cost(0, 0, 5, 5) == 0
    assert cost(999_999, 1, 1, 1) == 1
    assert cost(1_000_001, 0, 1, 0) == 2
