"""PaymentEscrow through the typed client on anvil, with everything a payer signs built
by mercato.protocol.eip712 and signed by eth_account."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.client import ChainClient
from mercato.chain.devnet import increase_time, latest_timestamp
from mercato.chain.errors import ContractReverted
from mercato.chain.escrow import ChannelStatus, ClaimRejectReason, SignedSettlement, SpendClaim
from mercato.chain.events import (
    BatchSettled,
    ChannelClaimed,
    ChannelClosed,
    ChannelCloseStarted,
    ChannelOpened,
    ClaimRejected,
    Deposited,
    SettlementRejected,
    SpendsClaimed,
    SpendsSettled,
    Transfer,
    WithdrawRequested,
)
from mercato.protocol import eip712

from .conftest import CONFIG, NewAccount

pytestmark = pytest.mark.chain

MUSD = 10**6


def sign_claim(
    chain: ChainClient,
    payer: LocalAccount,
    operator: str,
    *,
    max_amount: int,
    amount: int,
    deadline: int,
    nonce: int | None = None,
) -> SpendClaim:
    auth = eip712.SpendAuthorization(
        payer=payer.address,
        operator=operator,
        max_amount=max_amount,
        nonce=secrets.randbits(256) if nonce is None else nonce,
        deadline=deadline,
    )
    domain = eip712.escrow_domain(chain.manifest.chain_id, chain.escrow.address)
    signed = Account.sign_typed_data(payer.key, full_message=auth.typed_data(domain))
    return SpendClaim(auth, amount, bytes(signed.signature))


def sign_voucher(chain: ChainClient, payer: LocalAccount, channel_id: bytes, total: int) -> bytes:
    domain = eip712.escrow_domain(chain.manifest.chain_id, chain.escrow.address)
    typed = eip712.Voucher(channel_id, total).typed_data(domain)
    return bytes(Account.sign_typed_data(payer.key, full_message=typed).signature)


async def depositor(chain: ChainClient, new_account: NewAccount, musd: int) -> tuple[
    LocalAccount, ChainClient
]:  # fmt: skip
    account = await new_account(1_000)
    client = chain.for_account(account)
    await client.token.approve(client.escrow.address, 1_000 * MUSD)
    if musd:
        result = await client.escrow.deposit(musd * MUSD)
        assert result.event(Deposited).balance == musd * MUSD
    return account, client


async def test_spend_authorizations_settle_in_one_batch(
    chain: ChainClient, new_account: NewAccount
) -> None:
    payer, _ = await depositor(chain, new_account, 100)
    operator = chain.for_account(await new_account())
    assert operator.address is not None
    deadline = await latest_timestamp(chain.w3) + 3600
    base = secrets.randbits(200) << 8  # two claims in one nonce word, one elsewhere
    claims = [
        sign_claim(chain, payer, operator.address, max_amount=2 * MUSD, amount=1_234_567,
                   deadline=deadline, nonce=base + 1),
        sign_claim(chain, payer, operator.address, max_amount=2 * MUSD, amount=2 * MUSD,
                   deadline=deadline, nonce=base + 7),
        sign_claim(chain, payer, operator.address, max_amount=5 * MUSD, amount=1,
                   deadline=deadline),
    ]  # fmt: skip
    separator = await chain.escrow.domain_separator()
    first = claims[0].authorization
    assert first.digest(separator) == await chain.escrow.spend_authorization_digest(
        first.payer, first.operator, first.max_amount, first.nonce, first.deadline
    )

    result = await operator.escrow.claim_batch(claims)
    total = 1_234_567 + 2 * MUSD + 1
    settled = result.event(BatchSettled)
    assert (settled.operator, settled.count, settled.total) == (operator.address, 3, total)
    runs = result.events_of(SpendsClaimed)
    assert sorted(n for run in runs for n in run.nonces) == sorted(c.nonce for c in claims)
    assert sum(run.amount for run in runs) == total
    assert not result.events_of(ClaimRejected)
    assert result.event(Transfer).value == total
    assert await chain.escrow.balance_of(payer.address) == 100 * MUSD - total
    assert await chain.token.balance_of(operator.address) == total
    assert all([await chain.escrow.is_nonce_used(payer.address, c.nonce) for c in claims])


async def test_bad_claims_are_skipped_with_reasons(
    chain: ChainClient, new_account: NewAccount
) -> None:
    payer, payer_client = await depositor(chain, new_account, 10)
    operator = chain.for_account(await new_account())
    other = chain.for_account(await new_account())
    assert operator.address and other.address
    now = await latest_timestamp(chain.w3)
    good = sign_claim(chain, payer, operator.address, max_amount=MUSD, amount=MUSD,
                      deadline=now + 600)  # fmt: skip
    assert (await operator.escrow.claim_batch([good])).event(BatchSettled).count == 1

    cancelled = sign_claim(chain, payer, operator.address, max_amount=MUSD, amount=1,
                           deadline=now + 600)  # fmt: skip
    await payer_client.escrow.cancel_nonce(cancelled.nonce)
    bad = [
        good,  # replayed
        sign_claim(chain, payer, other.address, max_amount=MUSD, amount=1, deadline=now + 600),
        sign_claim(chain, payer, operator.address, max_amount=MUSD, amount=1, deadline=now - 1),
        sign_claim(chain, payer, operator.address, max_amount=MUSD, amount=MUSD + 1,
                   deadline=now + 600),
        cancelled,
        sign_claim(chain, payer, operator.address, max_amount=100 * MUSD, amount=50 * MUSD,
                   deadline=now + 600),
    ]  # fmt: skip
    ok = sign_claim(chain, payer, operator.address, max_amount=MUSD, amount=5, deadline=now + 600)
    result = await operator.escrow.claim_batch([*bad, ok])
    reasons = [(e.nonce, ClaimRejectReason(e.reason)) for e in result.events_of(ClaimRejected)]
    assert reasons == [
        (bad[0].nonce, ClaimRejectReason.NONCE_USED),
        (bad[1].nonce, ClaimRejectReason.BAD_SIGNATURE),  # signed for another operator
        (bad[2].nonce, ClaimRejectReason.EXPIRED),
        (bad[3].nonce, ClaimRejectReason.OVER_MAX),
        (bad[4].nonce, ClaimRejectReason.NONCE_USED),
        (bad[5].nonce, ClaimRejectReason.INSUFFICIENT_BALANCE),
    ]
    assert result.event(BatchSettled).count == 1 and result.event(BatchSettled).total == 5
    assert await chain.escrow.balance_of(payer.address) == 9 * MUSD - 5
    # The other operator cannot use a claim signed for the first one either.
    unused = sign_claim(chain, payer, operator.address, max_amount=MUSD, amount=5,
                        deadline=now + 600)  # fmt: skip
    stolen = await other.escrow.claim_batch([unused])
    assert stolen.event(ClaimRejected).reason == ClaimRejectReason.BAD_SIGNATURE
    assert not await chain.escrow.is_nonce_used(payer.address, unused.nonce)


async def test_spend_settlement_settles_many_nonces_with_one_signature(
    chain: ChainClient, new_account: NewAccount
) -> None:
    payer, _ = await depositor(chain, new_account, 100)
    operator = chain.for_account(await new_account())
    assert operator.address is not None
    deadline = await latest_timestamp(chain.w3) + 3600
    word = secrets.randbits(64)
    claims = [
        sign_claim(chain, payer, operator.address, max_amount=MUSD, amount=1_000 + i,
                   deadline=deadline, nonce=word << 8 | i)
        for i in range(5)
    ]  # fmt: skip
    total = sum(c.amount for c in claims[:4])
    settlement = eip712.SpendSettlement(payer.address, operator.address, word, 0b1111, total,
                                        deadline)  # fmt: skip
    domain = eip712.escrow_domain(chain.manifest.chain_id, chain.escrow.address)
    typed = settlement.typed_data(domain)
    signed = SignedSettlement(
        settlement, bytes(Account.sign_typed_data(payer.key, full_message=typed).signature)
    )
    assert settlement.digest(await chain.escrow.domain_separator()) == (
        await chain.escrow.spend_settlement_digest(
            payer.address, operator.address, word, 0b1111, total, deadline
        )
    )
    result = await operator.escrow.claim_settlements([signed, signed])  # the copy is refused
    (spent,) = result.events_of(SpendsSettled)
    assert (spent.payer, spent.operator, spent.word, spent.mask, spent.amount) == (
        payer.address, operator.address, word, 0b1111, total
    )  # fmt: skip
    assert spent.nonces == [c.nonce for c in claims[:4]]
    (rejected,) = result.events_of(SettlementRejected)
    assert ClaimRejectReason(rejected.reason) == ClaimRejectReason.NONCE_USED
    assert result.event(Transfer).value == total
    assert await chain.token.balance_of(operator.address) == total
    # the covered authorizations are spent; the fifth is still claimable on its own
    batch = await operator.escrow.claim_batch(claims)
    reasons = [(e.nonce, ClaimRejectReason(e.reason)) for e in batch.events_of(ClaimRejected)]
    assert reasons == [(c.nonce, ClaimRejectReason.NONCE_USED) for c in claims[:4]]
    assert batch.event(BatchSettled).total == claims[4].amount
    assert await chain.escrow.balance_of(payer.address) == 100 * MUSD - total - claims[4].amount


async def test_withdrawal_thaws_first(chain: ChainClient, new_account: NewAccount) -> None:
    payer, client = await depositor(chain, new_account, 20)
    requested = (await client.escrow.request_withdraw(15 * MUSD)).event(WithdrawRequested)
    pending = await chain.escrow.pending_withdrawal(payer.address)
    assert (pending.amount, pending.available_at) == (15 * MUSD, requested.available_at)
    with pytest.raises(ContractReverted) as info:
        await client.escrow.withdraw()
    assert info.value.reason == "escrow: still thawing"
    with pytest.raises(ContractReverted, match="amount exceeds balance"):
        await client.escrow.request_withdraw(21 * MUSD)
    await increase_time(chain.w3, CONFIG.withdraw_delay)
    before = await chain.token.balance_of(payer.address)
    await client.escrow.withdraw()
    assert await chain.token.balance_of(payer.address) == before + 15 * MUSD
    assert await chain.escrow.balance_of(payer.address) == 5 * MUSD


async def test_channel_claim_then_cooperative_close(
    chain: ChainClient, new_account: NewAccount
) -> None:
    payer, client = await depositor(chain, new_account, 0)
    operator = chain.for_account(await new_account())
    assert operator.address is not None
    salt = secrets.token_bytes(32)
    channel_id, opened = await client.escrow.open_channel(operator.address, 10 * MUSD, salt)
    expected = eip712.channel_id(chain.escrow.address, chain.manifest.chain_id, payer.address,
                                 operator.address, salt)  # fmt: skip
    assert (
        channel_id
        == expected
        == await chain.escrow.channel_id_of(payer.address, operator.address, salt)
    )
    assert opened.event(ChannelOpened).amount == 10 * MUSD
    await client.escrow.top_up(channel_id, 2 * MUSD)
    with pytest.raises(ContractReverted, match="channel exists"):
        await client.escrow.open_channel(operator.address, 1, salt)

    # Vouchers are cumulative; only the ones the operator chooses ever go on-chain.
    vouchers = {total: sign_voucher(chain, payer, channel_id, total)
                for total in (MUSD, 3 * MUSD, 4 * MUSD)}  # fmt: skip
    claimed = await operator.escrow.claim_channel(channel_id, 3 * MUSD, vouchers[3 * MUSD])
    assert claimed.event(ChannelClaimed).total_claimed == 3 * MUSD
    with pytest.raises(ContractReverted, match="nothing to claim"):
        await operator.escrow.claim_channel(channel_id, MUSD, vouchers[MUSD])
    with pytest.raises(ContractReverted, match="bad voucher signature"):
        forged = sign_voucher(chain, Account.create(), channel_id, 9 * MUSD)
        await operator.escrow.claim_channel(channel_id, 9 * MUSD, forged)
    with pytest.raises(ContractReverted, match="not the channel operator"):
        await client.escrow.claim_channel(channel_id, 4 * MUSD, vouchers[4 * MUSD])

    payer_before = await chain.token.balance_of(payer.address)
    result = await operator.escrow.close_cooperative(channel_id, 4 * MUSD, vouchers[4 * MUSD])
    closed = result.event(ChannelClosed)
    assert (closed.paid_to_operator, closed.refunded) == (4 * MUSD, 8 * MUSD)
    assert await chain.token.balance_of(operator.address) == 4 * MUSD
    assert await chain.token.balance_of(payer.address) == payer_before + 8 * MUSD
    channel = await chain.escrow.channels(channel_id)
    assert channel.status is ChannelStatus.CLOSED and channel.claimed == 4 * MUSD


async def test_payer_close_leaves_a_challenge_period(
    chain: ChainClient, new_account: NewAccount
) -> None:
    payer, client = await depositor(chain, new_account, 0)
    operator = chain.for_account(await new_account())
    assert operator.address is not None
    channel_id, _ = await client.escrow.open_channel(operator.address, 5 * MUSD,
                                                     secrets.token_bytes(32))  # fmt: skip
    voucher = sign_voucher(chain, payer, channel_id, 2 * MUSD)

    started = (await client.escrow.start_close(channel_id)).event(ChannelCloseStarted)
    channel = await chain.escrow.channels(channel_id)
    assert channel.status is ChannelStatus.CLOSING and channel.closes_at == started.closes_at
    assert started.closes_at >= await latest_timestamp(chain.w3) + CONFIG.challenge_period - 1
    with pytest.raises(ContractReverted, match="challenge period running"):
        await client.escrow.finalize_close(channel_id)
    with pytest.raises(ContractReverted, match="not the channel payer"):
        await operator.escrow.start_close(channel_id)

    # The operator answers the challenge with its latest voucher...
    await operator.escrow.claim_channel(channel_id, 2 * MUSD, voucher)
    await increase_time(chain.w3, CONFIG.challenge_period)
    # ...and after the period nothing more can be claimed; anyone may finalize.
    with pytest.raises(ContractReverted, match="channel not claimable"):
        await operator.escrow.claim_channel(
            channel_id, 3 * MUSD, sign_voucher(chain, payer, channel_id, 3 * MUSD)
        )
    payer_before = await chain.token.balance_of(payer.address)
    closed = (await operator.escrow.finalize_close(channel_id)).event(ChannelClosed)
    assert (closed.paid_to_operator, closed.refunded) == (2 * MUSD, 3 * MUSD)
    assert await chain.token.balance_of(payer.address) == payer_before + 3 * MUSD
    assert await chain.token.balance_of(operator.address) == 2 * MUSD
    events = await chain.fetch_escrow_events(closed.block_number - 5)
    assert any(isinstance(e, ChannelClosed) and e.channel_id == channel_id for e in events)
