"""Typed wrapper of PaymentEscrow: deposits, batched spend authorizations, channels.

Wire formats of what payers sign: docs/protocols/spendauth.md and channels.md; the
typed data and digests are built by :mod:`mercato.protocol.eip712`, ``claim_batch``'s
grouped, packed arguments and ``claim_settlements``' packed settlements by
:mod:`mercato.chain.batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from mercato.chain.batch import ClaimTuple, GroupTuple, pack_batch, pack_settlement
from mercato.chain.contract import ContractBinding, Eip712Domain, TxResult, read_eip712_domain
from mercato.chain.events import ESCROW_EVENTS, ChannelOpened
from mercato.protocol.eip712 import SpendAuthorization, SpendSettlement

MAX_BATCH = 128  # claims per claim_batch call (the contract's bound)
MAX_CHANNEL_BATCH = 32  # claims per claim_channels call
MAX_SETTLEMENTS = 64  # settlements per claim_settlements call


class ClaimRejectReason(IntEnum):
    """``ClaimRejected.reason`` and ``SettlementRejected.reason`` (never ``OVER_MAX``)."""

    EXPIRED = 1
    OVER_MAX = 2
    NONCE_USED = 3
    INSUFFICIENT_BALANCE = 4
    BAD_SIGNATURE = 5
    ZERO_AMOUNT = 6


class ChannelRejectReason(IntEnum):
    """``ChannelClaimRejected.reason`` (claim_channels only; claim_channel reverts)."""

    NOT_OPERATOR = 1
    NOT_CLAIMABLE = 2
    NOTHING_TO_CLAIM = 3
    BAD_SIGNATURE = 4


class ChannelStatus(IntEnum):
    NONE = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


@dataclass(frozen=True)
class SpendClaim:
    """A payer's signed spend authorization and the metered ``amount`` (≤ its maximum)
    the operator claims with it. ``signature``: 65 bytes ``r || s || v`` or 64 compact."""

    authorization: SpendAuthorization
    amount: int
    signature: bytes

    @property
    def payer(self) -> str:
        return self.authorization.payer

    @property
    def nonce(self) -> int:
        return self.authorization.nonce


def encode_claims(claims: Sequence[SpendClaim]) -> tuple[list[GroupTuple], list[ClaimTuple]]:
    """``claim_batch(groups, claims)`` arguments, in the given order (see
    :func:`mercato.chain.batch.pack_batch`). Raises ValueError for a claim whose fields
    do not fit the packing (:func:`mercato.chain.batch.check_claim`)."""
    return pack_batch((c.authorization, c.amount, c.signature) for c in claims)


@dataclass(frozen=True)
class SignedSettlement:
    """A payer's signed spend settlement. ``signature``: 65 bytes ``r || s || v`` or 64
    compact."""

    settlement: SpendSettlement
    signature: bytes

    @property
    def payer(self) -> str:
        return self.settlement.payer


@dataclass(frozen=True)
class ChannelClaim:
    channel_id: bytes
    cumulative_amount: int
    signature: bytes  # 65-byte or 64-byte compact voucher signature


@dataclass(frozen=True)
class Channel:
    payer: str
    operator: str
    deposit: int
    claimed: int
    closes_at: int
    status: ChannelStatus

    @property
    def remaining(self) -> int:
        return self.deposit - self.claimed


@dataclass(frozen=True)
class PendingWithdrawal:
    amount: int
    available_at: int  # Unix seconds; 0 with amount 0 when nothing is pending


class PaymentEscrow(ContractBinding):
    EVENTS = ESCROW_EVENTS

    # --- configuration views ---------------------------------------------------------

    async def token(self) -> str:
        return str(await self.call("token"))

    async def withdraw_delay(self) -> int:
        return int(await self.call("withdraw_delay"))

    async def challenge_period(self) -> int:
        return int(await self.call("challenge_period"))

    async def domain_separator(self) -> bytes:
        return bytes(await self.call("DOMAIN_SEPARATOR"))

    async def eip712_domain(self) -> Eip712Domain:
        return await read_eip712_domain(self)

    # --- deposits and withdrawals ----------------------------------------------------

    async def balance_of(self, payer: str) -> int:
        return int(await self.call("balance_of", payer))

    async def pending_withdrawal(self, payer: str) -> PendingWithdrawal:
        amount, available_at = await self.call("pending_withdrawal", payer)
        return PendingWithdrawal(int(amount), int(available_at))

    async def deposit(self, amount: int) -> TxResult:
        """Pulls ``amount`` from the sender (approve the escrow first)."""
        return await self.send("deposit", amount)

    async def deposit_for(self, payer: str, amount: int) -> TxResult:
        return await self.send("deposit_for", payer, amount)

    async def request_withdraw(self, amount: int) -> TxResult:
        """Start (or replace; 0 cancels) a withdrawal, payable after the thawing delay."""
        return await self.send("request_withdraw", amount)

    async def withdraw(self) -> TxResult:
        return await self.send("withdraw")

    # --- spend authorizations --------------------------------------------------------

    async def is_nonce_used(self, payer: str, nonce: int) -> bool:
        return bool(await self.call("is_nonce_used", payer, nonce))

    async def nonce_bitmap(self, payer: str, word: int) -> int:
        return int(await self.call("nonce_bitmap", payer, word))

    async def cancel_nonce(self, nonce: int) -> TxResult:
        return await self.send("cancel_nonce", nonce)

    async def invalidate_nonces(self, word: int, mask: int) -> TxResult:
        return await self.send("invalidate_nonces", word, mask)

    async def spend_authorization_digest(
        self, payer: str, operator: str, max_amount: int, nonce: int, deadline: int
    ) -> bytes:
        return bytes(
            await self.call(
                "spend_authorization_digest", payer, operator, max_amount, nonce, deadline
            )
        )

    async def claim_batch(self, claims: Sequence[SpendClaim]) -> TxResult:
        """Settle up to :data:`MAX_BATCH` claims as the operator (the sender). Bad claims
        are skipped with ``ClaimRejected``; see ``SpendsClaimed`` / ``BatchSettled``.
        Claims sorted by (payer, nonce) cost least: consecutive claims of one payer in
        one nonce word form one group."""
        if len(claims) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} claims per batch, got {len(claims)}")
        groups, packed = encode_claims(claims)
        return await self.send("claim_batch", groups, packed)

    async def claim_all(self, claims: Sequence[SpendClaim]) -> list[TxResult]:
        """Settle any number of claims, :data:`MAX_BATCH` per transaction, sorted by
        (payer, nonce) so that runs of one payer's nonce word share storage writes."""
        ordered = sorted(claims, key=lambda c: (c.payer.lower(), c.nonce))
        return [
            await self.claim_batch(ordered[i : i + MAX_BATCH])
            for i in range(0, len(ordered), MAX_BATCH)
        ]

    # --- spend settlements -----------------------------------------------------------

    async def spend_settlement_digest(
        self, payer: str, operator: str, word: int, mask: int, total: int, deadline: int
    ) -> bytes:
        return bytes(
            await self.call("spend_settlement_digest", payer, operator, word, mask, total, deadline)
        )

    async def claim_settlements(self, settlements: Sequence[SignedSettlement]) -> TxResult:
        """Settle up to :data:`MAX_SETTLEMENTS` spend settlements as the operator (the
        sender). Bad ones are skipped with ``SettlementRejected``; accepted ones log
        ``SpendsSettled``. Raises ValueError for a settlement that does not fit the
        packing (:func:`mercato.chain.batch.check_settlement`)."""
        if len(settlements) > MAX_SETTLEMENTS:
            raise ValueError(
                f"at most {MAX_SETTLEMENTS} settlements per call, got {len(settlements)}"
            )
        packed = [pack_settlement(s.settlement, s.signature) for s in settlements]
        return await self.send("claim_settlements", packed)

    # --- channels --------------------------------------------------------------------

    async def channels(self, channel_id: bytes) -> Channel:
        payer, operator, deposit, claimed, closes_at, status = await self.call(
            "channels", channel_id
        )
        return Channel(
            str(payer), str(operator), int(deposit), int(claimed), int(closes_at),
            ChannelStatus(int(status)),
        )  # fmt: skip

    async def channel_id_of(self, payer: str, operator: str, salt: bytes) -> bytes:
        return bytes(await self.call("channel_id_of", payer, operator, salt))

    async def voucher_digest(self, channel_id: bytes, cumulative_amount: int) -> bytes:
        return bytes(await self.call("voucher_digest", channel_id, cumulative_amount))

    async def open_channel(self, operator: str, amount: int, salt: bytes) -> tuple[bytes, TxResult]:
        """Open a channel as the payer (the sender); returns its id and the transaction."""
        result = await self.send("open_channel", operator, amount, salt)
        return result.event(ChannelOpened).channel_id, result

    async def top_up(self, channel_id: bytes, amount: int) -> TxResult:
        return await self.send("top_up", channel_id, amount)

    async def claim_channel(
        self, channel_id: bytes, cumulative_amount: int, signature: bytes
    ) -> TxResult:
        return await self.send("claim_channel", channel_id, cumulative_amount, signature)

    async def claim_channel_upto(
        self, channel_id: bytes, cumulative_amount: int, signature: bytes, total: int
    ) -> TxResult:
        """Metered claim: raise the channel's claimed total to ``min(total, voucher,
        deposit)``; the voucher is only the payer's ceiling."""
        return await self.send(
            "claim_channel_upto", channel_id, cumulative_amount, signature, total
        )

    async def claim_channels(self, claims: Sequence[ChannelClaim]) -> TxResult:
        if len(claims) > MAX_CHANNEL_BATCH:
            raise ValueError(f"at most {MAX_CHANNEL_BATCH} channel claims, got {len(claims)}")
        return await self.send(
            "claim_channels", [(c.channel_id, c.cumulative_amount, c.signature) for c in claims]
        )

    async def close_cooperative(
        self, channel_id: bytes, cumulative_amount: int, signature: bytes
    ) -> TxResult:
        """By the operator: claim up to the voucher, refund the rest to the payer, close."""
        return await self.send("close_cooperative", channel_id, cumulative_amount, signature)

    async def start_close(self, channel_id: bytes) -> TxResult:
        """By the payer: start the challenge period."""
        return await self.send("start_close", channel_id)

    async def finalize_close(self, channel_id: bytes) -> TxResult:
        """By anyone, once the challenge period is over: pay out and refund."""
        return await self.send("finalize_close", channel_id)
