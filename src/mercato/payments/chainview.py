"""Chain state the payment checks need, cached so the request path never waits on RPC.

A payer's escrow balance (less a pending withdrawal) and a channel's deposit/status
are fetched once on first sight, then refreshed in the background every
``refresh_s``. A request that the cache would refuse gets one fresh read before the
refusal (a deposit or top-up may just have landed), so only refusals of unknown or
stale state ever wait on the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from eth_utils.address import to_checksum_address

from mercato.chain.escrow import Channel, ChannelStatus, PaymentEscrow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Funds:
    balance: int
    withdrawing: int  # requested withdrawal: leaves after the thawing delay
    fetched_at: float

    @property
    def available(self) -> int:
        return max(0, self.balance - self.withdrawing)


class ChainView:
    def __init__(
        self, escrow: PaymentEscrow, refresh_s: float = 2.0, forget_s: float = 900
    ) -> None:
        self._escrow = escrow
        self._refresh_s = refresh_s
        self._forget_s = forget_s
        self._funds: dict[str, Funds] = {}
        self._channels: dict[bytes, tuple[Channel, float]] = {}
        self._seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_loop(), name="chain-view")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def funds(self, payer: str, *, fresh: bool = False) -> Funds:
        key = payer.lower()
        self._seen[key] = time.monotonic()
        cached = self._funds.get(key)
        if cached is not None and not fresh:
            return cached
        address = to_checksum_address(payer)
        balance, pending = await asyncio.gather(
            self._escrow.balance_of(address), self._escrow.pending_withdrawal(address)
        )
        funds = Funds(balance, pending.amount, time.monotonic())
        self._funds[key] = funds
        return funds

    async def channel(self, channel_id: bytes, *, fresh: bool = False) -> Channel | None:
        cached = self._channels.get(channel_id)
        if cached is not None and not fresh:
            return cached[0]
        ch = await self._escrow.channels(channel_id)
        if ch.status == ChannelStatus.NONE:
            return None
        self._channels[channel_id] = (ch, time.monotonic())
        return ch

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            now = time.monotonic()
            for payer, seen in list(self._seen.items()):
                if now - seen > self._forget_s:
                    self._seen.pop(payer, None)
                    self._funds.pop(payer, None)
                    continue
                with contextlib.suppress(Exception):
                    await self.funds(payer, fresh=True)
            for channel_id, (ch, _) in list(self._channels.items()):
                if ch.status == ChannelStatus.CLOSED:
                    continue
                try:
                    await self.channel(channel_id, fresh=True)
                except Exception as exc:
                    log.debug("channel refresh failed: %s", exc)
