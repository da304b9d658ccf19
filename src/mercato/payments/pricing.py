"""Prices and costs. The one place where rounding happens (docs/protocols/pricing.md).

Money is an integer in the payment token's base units (the devnet token has 6
decimals, so 1_000_000 = 1 mUSD). Prices are per 1,000,000 tokens. The cost of a
request is the sum over input and output, divided once and rounded up:

    cost = ceil((prompt_tokens * input_price + completion_tokens * output_price) / 1_000_000)

Rounding up costs the payer at most one base unit per request and means a non-free
request never costs 0.
"""

from __future__ import annotations

from dataclasses import dataclass

PER_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    input_per_m: int
    output_per_m: int

    def __post_init__(self) -> None:
        if self.input_per_m < 0 or self.output_per_m < 0:
            raise ValueError("prices cannot be negative")

    @property
    def is_free(self) -> bool:
        return self.input_per_m == 0 and self.output_per_m == 0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        if prompt_tokens < 0 or completion_tokens < 0:
            raise ValueError("token counts cannot be negative")
        total = prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m
        return -(-total // PER_TOKENS)

    def max_completion_tokens(self, budget: int, prompt_tokens: int) -> int:
        """The most output tokens ``budget`` pays for after ``prompt_tokens`` of input."""
        left = budget * PER_TOKENS - prompt_tokens * self.input_per_m
        if left < 0:
            return 0
        if self.output_per_m == 0:
            return 2**62
        return left // self.output_per_m


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a request can cost at most: its prompt and its output-token ceiling."""

    prompt_tokens: int
    max_completion_tokens: int
    amount: int


def estimate(price: Price, prompt_tokens: int, max_completion_tokens: int) -> Estimate:
    return Estimate(
        prompt_tokens, max_completion_tokens, price.cost(prompt_tokens, max_completion_tokens)
    )


def charge(price: Price, prompt_tokens: int, completion_tokens: int, authorized: int) -> int:
    """The actual charge: the metered cost, never above what was authorized."""
    return min(price.cost(prompt_tokens, completion_tokens), authorized)
