from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mercato.payments.pricing import Price, charge, estimate
from tests.helpers import doc_blocks


def test_doc_table() -> None:
    rows = doc_blocks("pricing.md", "pricing-example")["table"].splitlines()[1:]
    assert len(rows) == 5
    for row in rows:
        pin, pout, prompt, completion, cost = map(int, row.split())
        assert Price(pin, pout).cost(prompt, completion) == cost


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**6), st.integers(0, 10**6))
def test_cost_rounds_up_by_less_than_one_unit(pin: int, pout: int, p: int, c: int) -> None:
    exact = (p * pin + c * pout) / 1_000_000
    cost = Price(pin, pout).cost(p, c)
    assert exact <= cost < exact + 1
    assert Price(pin, pout).max_completion_tokens(cost, p) >= c if pout else True


def test_charge_never_exceeds_the_authorization() -> None:
    price = Price(2_000_000, 8_000_000)
    est = estimate(price, 31, 512)
    assert est.amount == 4158
    assert charge(price, 31, 4, est.amount) == 94
    assert charge(price, 31, 10_000, est.amount) == est.amount
    with pytest.raises(ValueError):
        Price(-1, 0)
