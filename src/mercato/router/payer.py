"""The seam through which the router pays operators (or passes a client's payment on).

The router calls :meth:`Payer.payment_headers` before each attempt and
:meth:`Payer.on_response` after it. :class:`NoPayment` is for operators in free mode;
the payments package plugs in channels, spend authorizations or x402 pass-through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from mercato.router.pricing import Estimate
from mercato.router.selection import Offer


class Payer(Protocol):
    async def payment_headers(self, operator: Offer, estimate: Estimate) -> dict[str, str]:
        """Headers that pay ``operator`` for at most ``estimate`` (sent with the attempt)."""
        ...

    async def on_response(
        self, operator: Offer, status: int, headers: Mapping[str, str], cost: int | None
    ) -> None:
        """The attempt's outcome (``cost`` None when nothing was served)."""
        ...


class NoPayment:
    async def payment_headers(self, operator: Offer, estimate: Estimate) -> dict[str, str]:
        return {}

    async def on_response(
        self, operator: Offer, status: int, headers: Mapping[str, str], cost: int | None
    ) -> None:
        return None
