"""What a request costs: integer base units, prices per 1M tokens, rounded up. Pure.

``cost = ceil((prompt_tokens * price_in_per_m + completion_tokens * price_out_per_m)
/ 1_000_000)``: one rounding per request, up, so that a hold computed the same way
from upper bounds always covers the capture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mercato.router.selection import Offer

PER = 1_000_000


def cost(
    prompt_tokens: int, completion_tokens: int, price_in_per_m: int, price_out_per_m: int
) -> int:
    total = prompt_tokens * price_in_per_m + completion_tokens * price_out_per_m
    return -(-total // PER)


@dataclass(frozen=True, slots=True)
class Estimate:
    """Upper bounds for a request, known before it is sent."""

    prompt_tokens: int  # a token is at least one byte: the body's length bounds it
    completion_tokens: int  # max_tokens, or the router's default cap

    def max_cost(self, offers: Iterable[Offer]) -> int:
        """The most any of ``offers`` can charge (what the router holds)."""
        return max(
            (
                cost(
                    self.prompt_tokens, self.completion_tokens, o.price_in_per_m, o.price_out_per_m
                )
                for o in offers
            ),
            default=0,
        )


def offer_cost(offer: Offer, prompt_tokens: int, completion_tokens: int) -> int:
    return cost(prompt_tokens, completion_tokens, offer.price_in_per_m, offer.price_out_per_m)
