"""Decoded events of Mercato's contracts, one frozen dataclass per ABI event.

Field names are the contract's argument names (checked against the ABI when a
binding is built). Every event also carries ``block_number``, ``log_index``,
``tx_hash`` and ``address`` (the emitting contract) from :class:`ChainEvent`.
Addresses are checksummed strings, ``bytes32`` values are ``bytes``, amounts are
integers in the token's base units, times are Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from mercato.chain.contract import ChainEvent
from mercato.protocol.eip712 import mask_nonces

# --- PaymentToken --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Transfer(ChainEvent):
    sender: str
    receiver: str
    value: int


@dataclass(frozen=True, kw_only=True)
class Approval(ChainEvent):
    owner: str
    spender: str
    value: int


@dataclass(frozen=True, kw_only=True)
class RoleMinterChanged(ChainEvent):
    minter: str
    status: bool


@dataclass(frozen=True, kw_only=True)
class OwnershipTransferred(ChainEvent):
    previous_owner: str
    new_owner: str


@dataclass(frozen=True, kw_only=True)
class AuthorizationUsed(ChainEvent):
    authorizer: str
    nonce: bytes


@dataclass(frozen=True, kw_only=True)
class AuthorizationCanceled(ChainEvent):
    authorizer: str
    nonce: bytes


TOKEN_EVENTS: tuple[type[ChainEvent], ...] = (
    Transfer,
    Approval,
    RoleMinterChanged,
    OwnershipTransferred,
    AuthorizationUsed,
    AuthorizationCanceled,
)

# --- PaymentEscrow -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Deposited(ChainEvent):
    payer: str
    amount: int
    balance: int


@dataclass(frozen=True, kw_only=True)
class WithdrawRequested(ChainEvent):
    payer: str
    amount: int
    available_at: int


@dataclass(frozen=True, kw_only=True)
class Withdrawn(ChainEvent):
    payer: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class SpendsClaimed(ChainEvent):
    """Accepted claims of one payer in one nonce word: nonces ``word * 256 + bit`` for
    every bit set in ``mask``; ``amount`` is their sum."""

    payer: str
    operator: str
    word: int
    mask: int
    amount: int

    @property
    def nonces(self) -> list[int]:
        return mask_nonces(self.word, self.mask)


@dataclass(frozen=True, kw_only=True)
class ClaimRejected(ChainEvent):
    payer: str
    nonce: int
    reason: int  # mercato.chain.escrow.ClaimRejectReason


@dataclass(frozen=True, kw_only=True)
class BatchSettled(ChainEvent):
    operator: str
    count: int
    total: int


@dataclass(frozen=True, kw_only=True)
class SpendsSettled(ChainEvent):
    """An accepted spend settlement (``claim_settlements``): the payer's nonces
    ``word * 256 + bit`` for every bit set in ``mask`` are paid, ``amount`` in all."""

    payer: str
    operator: str
    word: int
    mask: int
    amount: int

    @property
    def nonces(self) -> list[int]:
        return mask_nonces(self.word, self.mask)


@dataclass(frozen=True, kw_only=True)
class SettlementRejected(ChainEvent):
    """A skipped spend settlement; nothing of it was paid or marked used."""

    payer: str
    word: int
    mask: int
    reason: int  # mercato.chain.escrow.ClaimRejectReason (never OVER_MAX)


@dataclass(frozen=True, kw_only=True)
class NoncesInvalidated(ChainEvent):
    payer: str
    word: int
    mask: int


@dataclass(frozen=True, kw_only=True)
class ChannelOpened(ChainEvent):
    channel_id: bytes
    payer: str
    operator: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class ChannelToppedUp(ChainEvent):
    channel_id: bytes
    amount: int
    deposit: int


@dataclass(frozen=True, kw_only=True)
class ChannelClaimed(ChainEvent):
    channel_id: bytes
    amount: int
    total_claimed: int


@dataclass(frozen=True, kw_only=True)
class ChannelClaimRejected(ChainEvent):
    channel_id: bytes
    reason: int  # mercato.chain.escrow.ChannelRejectReason


@dataclass(frozen=True, kw_only=True)
class ChannelCloseStarted(ChainEvent):
    channel_id: bytes
    closes_at: int


@dataclass(frozen=True, kw_only=True)
class ChannelClosed(ChainEvent):
    channel_id: bytes
    paid_to_operator: int
    refunded: int


ESCROW_EVENTS: tuple[type[ChainEvent], ...] = (
    Deposited,
    WithdrawRequested,
    Withdrawn,
    SpendsClaimed,
    ClaimRejected,
    BatchSettled,
    SpendsSettled,
    SettlementRejected,
    NoncesInvalidated,
    ChannelOpened,
    ChannelToppedUp,
    ChannelClaimed,
    ChannelClaimRejected,
    ChannelCloseStarted,
    ChannelClosed,
)

EscrowEvent = (
    Deposited
    | WithdrawRequested
    | Withdrawn
    | SpendsClaimed
    | ClaimRejected
    | BatchSettled
    | SpendsSettled
    | SettlementRejected
    | NoncesInvalidated
    | ChannelOpened
    | ChannelToppedUp
    | ChannelClaimed
    | ChannelClaimRejected
    | ChannelCloseStarted
    | ChannelClosed
)
