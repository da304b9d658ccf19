"""The seam through which the router pays operators (or passes a client's payment on).

The router calls :meth:`Payer.payment_headers` before each attempt at an operator and
:meth:`Payer.on_response` once the attempt's answer is known, with the operator's
verified receipt and the payment headers that attempt was sent with (for a stream:
once the stream has ended). :meth:`Payer.close` is called when the router stops.
:class:`NoPayment` is for operators in free mode; the payments package plugs in spend
authorizations (:class:`mercato.network.router_payer.SpendAuthPayer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from mercato.protocol.receipts import Receipt
from mercato.router.pricing import Estimate
from mercato.router.selection import Offer


class Payer(Protocol):
    async def payment_headers(self, operator: Offer, estimate: Estimate) -> dict[str, str]:
        """Headers that pay ``operator`` for at most ``estimate`` (sent with the attempt)."""
        ...

    async def on_response(
        self,
        operator: Offer,
        status: int,
        headers: Mapping[str, str],
        receipt: Receipt | None,
        sent: Mapping[str, str],
    ) -> None:
        """An attempt that got an answer: its HTTP ``status`` and ``headers``, the
        operator's ``receipt`` (verified against the request and answer bytes and the
        operator's on-chain signers; None when there is none, it failed the check, or the
        answer was not served) and the payment headers it was ``sent`` with (what
        :meth:`payment_headers` returned). Must return promptly (slow work goes to
        background tasks): the router awaits it beside the answer; what it raises is
        logged, never passed on to the client."""
        ...

    async def close(self) -> None:
        """The router is stopping: finish what is owed (pending settlements)."""
        ...


class NoPayment:
    async def payment_headers(self, operator: Offer, estimate: Estimate) -> dict[str, str]:
        return {}

    async def on_response(
        self,
        operator: Offer,
        status: int,
        headers: Mapping[str, str],
        receipt: Receipt | None,
        sent: Mapping[str, str],
    ) -> None:
        return None

    async def close(self) -> None:
        return None
