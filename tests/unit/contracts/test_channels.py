"""PaymentEscrow unidirectional payment channels with cumulative EIP-712 vouchers."""

from __future__ import annotations

import os
from typing import Any

import boa
import pytest
from eth_account.signers.local import LocalAccount

from mercato.protocol import eip712

from .conftest import CHALLENGE_PERIOD, USD, account, chain_id, logs, now, sign_typed

pytestmark = pytest.mark.chain

OPEN, CLOSING, CLOSED = 1, 2, 3
NOT_OPERATOR, NOT_CLAIMABLE, NOTHING_TO_CLAIM, BAD_SIGNATURE = 1, 2, 3, 4


@pytest.fixture
def wallet(escrow: Any, token: Any, mint: Any, payer: LocalAccount) -> LocalAccount:
    mint(payer.address, 1_000 * USD)
    with boa.env.prank(payer.address):
        token.approve(escrow.address, 2**256 - 1)
    return payer


def open_channel(
    escrow: Any, payer: LocalAccount, operator: Any, amount: int, salt: bytes | None = None
) -> bytes:
    with boa.env.prank(payer.address):
        return bytes(escrow.open_channel(operator, amount, salt or os.urandom(32)))


def test_closed_channel_cannot_be_reopened(
    escrow: Any, wallet: LocalAccount, operator: Any
) -> None:
    salt = b"\x05" * 32
    cid = open_channel(escrow, wallet, operator, USD, salt)
    with boa.env.prank(operator):
        escrow.close_cooperative(cid, 0, b"")
    with boa.env.prank(wallet.address), boa.reverts("escrow: channel exists"):
        escrow.open_channel(operator, USD, salt)


def voucher(acct: LocalAccount, domain: dict[str, Any], channel: bytes, cumulative: int) -> bytes:
    return sign_typed(acct, eip712.voucher_typed_data(domain, channel, cumulative))


def test_open_channel(escrow: Any, token: Any, wallet: LocalAccount, operator: Any) -> None:
    salt = b"\x07" * 32
    with boa.env.prank(wallet.address):
        cid = bytes(escrow.open_channel(operator, 100 * USD, salt))
        ev = logs(escrow, "ChannelOpened")[0]
    assert cid == eip712.channel_id(
        str(escrow.address), chain_id(), wallet.address, str(operator), salt
    )
    assert cid == escrow.channel_id_of(wallet.address, operator, salt)
    assert (ev.channel_id, ev.payer, ev.operator, ev.amount) == (
        cid,
        wallet.address,
        operator,
        100 * USD,
    )
    assert tuple(escrow.channels(cid)) == (wallet.address, operator, 100 * USD, 0, 0, OPEN)
    assert token.balanceOf(escrow.address) == 100 * USD
    with boa.env.prank(wallet.address):
        with boa.reverts("escrow: channel exists"):
            escrow.open_channel(operator, 1, salt)
        with boa.reverts("escrow: zero amount"):
            escrow.open_channel(operator, 0, b"\x08" * 32)
        with boa.reverts("escrow: zero operator"):
            escrow.open_channel("0x" + "00" * 20, 1, b"\x08" * 32)


def test_top_up(escrow: Any, token: Any, wallet: LocalAccount, operator: Any, mint: Any) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    with boa.env.prank(wallet.address):
        escrow.top_up(cid, 5 * USD)
        ev = logs(escrow, "ChannelToppedUp")[0]
        assert (ev.channel_id, ev.amount, ev.deposit) == (cid, 5 * USD, 15 * USD)
        with boa.reverts("escrow: zero amount"):
            escrow.top_up(cid, 0)
        with boa.reverts("escrow: channel not open"):
            escrow.top_up(b"\x01" * 32, 1)
    sponsor = boa.env.generate_address()  # anyone may top up; refunds go to the payer
    mint(sponsor, USD)
    with boa.env.prank(sponsor):
        token.approve(escrow.address, USD)
        escrow.top_up(cid, USD)
    assert escrow.channels(cid).deposit == 16 * USD
    with boa.env.prank(wallet.address):
        escrow.start_close(cid)
        with boa.reverts("escrow: channel not open"):
            escrow.top_up(cid, 1)


def test_claim_cumulative_vouchers(
    escrow: Any, token: Any, wallet: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    v3 = voucher(wallet, escrow_domain, cid, 3 * USD)
    v7 = voucher(wallet, escrow_domain, cid, 7 * USD)
    assert escrow.voucher_digest(cid, 3 * USD) == eip712.voucher_digest(
        escrow.DOMAIN_SEPARATOR(), cid, 3 * USD
    )
    with boa.env.prank(operator):
        escrow.claim_channel(cid, 3 * USD, v3)
        ev = logs(escrow, "ChannelClaimed")[0]
        assert (ev.channel_id, ev.amount, ev.total_claimed) == (cid, 3 * USD, 3 * USD)
        escrow.claim_channel(cid, 7 * USD, v7)
        ev = logs(escrow, "ChannelClaimed")[0]
        assert (ev.amount, ev.total_claimed) == (4 * USD, 7 * USD)
        with boa.reverts("escrow: nothing to claim"):
            escrow.claim_channel(cid, 7 * USD, v7)  # replay
        with boa.reverts("escrow: nothing to claim"):
            escrow.claim_channel(cid, 3 * USD, v3)  # older voucher
    assert token.balanceOf(operator) == 7 * USD
    assert escrow.channels(cid).claimed == 7 * USD


def test_claim_rejections(
    escrow: Any, wallet: LocalAccount, operator: Any, operator2: Any, escrow_domain: dict[str, Any]
) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    other = open_channel(escrow, wallet, operator, 10 * USD)
    v = voucher(wallet, escrow_domain, cid, USD)
    with boa.env.prank(operator2), boa.reverts("escrow: not the channel operator"):
        escrow.claim_channel(cid, USD, v)
    with boa.env.prank(operator):
        with boa.reverts("escrow: bad voucher signature"):
            escrow.claim_channel(other, USD, v)  # voucher of another channel
        with boa.reverts("escrow: bad voucher signature"):
            escrow.claim_channel(cid, 2 * USD, v)  # amount not signed
        with boa.reverts("escrow: bad voucher signature"):
            escrow.claim_channel(cid, USD, voucher(account(0x666), escrow_domain, cid, USD))
        with boa.reverts("escrow: bad voucher signature"):
            escrow.claim_channel(cid, USD, v[:40])  # malformed length
        with boa.reverts("escrow: nothing to claim"):
            escrow.claim_channel(cid, 0, v)
        with boa.reverts("escrow: not the channel operator"):
            escrow.claim_channel(b"\x09" * 32, USD, v)  # no such channel


def test_high_s_and_compact_signatures(
    escrow: Any, wallet: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    sig = voucher(wallet, escrow_domain, cid, USD)
    v, r, s = eip712.split_signature(sig)
    high = r.to_bytes(32, "big") + (eip712.SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    bad_v = sig[:64] + bytes([29])
    with boa.env.prank(operator):
        with boa.reverts("escrow: bad voucher signature"):
            escrow.claim_channel(cid, USD, high)
        with boa.reverts("escrow: bad voucher signature"):
            escrow.claim_channel(cid, USD, bad_v)
        r_, vs = eip712.to_compact(sig)
        escrow.claim_channel(cid, USD, r_ + vs)  # EIP-2098 64-byte form
        v2 = voucher(wallet, escrow_domain, cid, 2 * USD)
        escrow.claim_channel(cid, 2 * USD, v2[:64] + bytes([v2[64] - 27]))  # v as 0/1
    assert escrow.channels(cid).claimed == 2 * USD


def test_voucher_above_deposit_is_capped(
    escrow: Any, token: Any, wallet: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    v12 = voucher(wallet, escrow_domain, cid, 12 * USD)
    with boa.env.prank(operator):
        escrow.claim_channel(cid, 12 * USD, v12)
        assert logs(escrow, "ChannelClaimed")[0].total_claimed == 10 * USD
    with boa.env.prank(wallet.address):
        escrow.top_up(cid, 5 * USD)
    with boa.env.prank(operator):
        escrow.claim_channel(cid, 12 * USD, v12)  # the rest after the top-up
        assert logs(escrow, "ChannelClaimed")[0].amount == 2 * USD
    assert token.balanceOf(operator) == 12 * USD


def test_claim_channels_batch(
    escrow: Any,
    token: Any,
    wallet: LocalAccount,
    operator: Any,
    operator2: Any,
    escrow_domain: dict[str, Any],
) -> None:
    a = open_channel(escrow, wallet, operator, 10 * USD)
    b = open_channel(escrow, wallet, operator, 10 * USD)
    c = open_channel(escrow, wallet, operator2, 10 * USD)
    claims = [
        (a, 2 * USD, voucher(wallet, escrow_domain, a, 2 * USD)),
        (b, 3 * USD, voucher(wallet, escrow_domain, b, 3 * USD)),
        (c, USD, voucher(wallet, escrow_domain, c, USD)),  # not ours
        (a, 2 * USD, voucher(wallet, escrow_domain, a, 2 * USD)),  # nothing new
        (b, 4 * USD, voucher(wallet, escrow_domain, a, 4 * USD)),  # wrong channel's voucher
    ]
    with boa.env.prank(operator):
        escrow.claim_channels(claims)
        events = escrow.get_logs()
    rejected = [
        (e.channel_id, e.reason) for e in events if type(e).__name__ == "ChannelClaimRejected"
    ]
    assert rejected == [(c, NOT_OPERATOR), (a, NOTHING_TO_CLAIM), (b, BAD_SIGNATURE)]
    transfers = [e for e in events if type(e).__name__ == "Transfer"]
    assert len(transfers) == 1 and transfers[0].value == 5 * USD
    assert token.balanceOf(operator) == 5 * USD
    with boa.env.prank(operator):
        escrow.claim_channels([])  # nothing happens
        assert escrow.get_logs() == []


def test_close_cooperative(
    escrow: Any,
    token: Any,
    wallet: LocalAccount,
    operator: Any,
    operator2: Any,
    escrow_domain: dict[str, Any],
) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    before = token.balanceOf(wallet.address)
    v = voucher(wallet, escrow_domain, cid, 4 * USD)
    with boa.env.prank(operator2), boa.reverts("escrow: not the channel operator"):
        escrow.close_cooperative(cid, 4 * USD, v)
    with boa.env.prank(operator):
        with boa.reverts("escrow: bad voucher signature"):
            escrow.close_cooperative(cid, 5 * USD, v)
        escrow.close_cooperative(cid, 4 * USD, v)
        events = escrow.get_logs()
        closed = next(e for e in events if type(e).__name__ == "ChannelClosed")
        assert (closed.channel_id, closed.paid_to_operator, closed.refunded) == (
            cid,
            4 * USD,
            6 * USD,
        )
        assert [e.amount for e in events if type(e).__name__ == "ChannelClaimed"] == [4 * USD]
        with boa.reverts("escrow: channel not open"):
            escrow.close_cooperative(cid, 4 * USD, v)
        with boa.reverts("escrow: channel not claimable"):
            escrow.claim_channel(cid, 4 * USD, v)
    assert token.balanceOf(operator) == 4 * USD
    assert token.balanceOf(wallet.address) == before + 6 * USD
    assert escrow.channels(cid).status == CLOSED
    assert token.balanceOf(escrow.address) == 0
    with boa.env.prank(wallet.address):
        with boa.reverts("escrow: channel not open"):
            escrow.top_up(cid, 1)
        with boa.reverts("escrow: channel not open"):
            escrow.start_close(cid)


def test_close_cooperative_without_new_voucher(
    escrow: Any, token: Any, wallet: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    with boa.env.prank(operator):
        escrow.claim_channel(cid, 3 * USD, voucher(wallet, escrow_domain, cid, 3 * USD))
        escrow.close_cooperative(cid, 0, b"")  # nothing more to claim: no signature needed
        closed = logs(escrow, "ChannelClosed")[0]
    assert (closed.paid_to_operator, closed.refunded) == (3 * USD, 7 * USD)


def test_payer_close_with_challenge_period(
    escrow: Any, token: Any, wallet: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    before = token.balanceOf(wallet.address)
    with boa.env.prank(operator), boa.reverts("escrow: not the channel payer"):
        escrow.start_close(cid)
    with boa.env.prank(wallet.address):
        with boa.reverts("escrow: channel not closing"):
            escrow.finalize_close(cid)
        escrow.start_close(cid)
        ev = logs(escrow, "ChannelCloseStarted")[0]
        assert (ev.channel_id, ev.closes_at) == (cid, now() + CHALLENGE_PERIOD)
        with boa.reverts("escrow: channel not open"):
            escrow.start_close(cid)
        with boa.reverts("escrow: challenge period running"):
            escrow.finalize_close(cid)
    assert escrow.channels(cid).status == CLOSING
    assert escrow.channels(cid).closes_at == now() + CHALLENGE_PERIOD
    # the operator still claims with its latest voucher during the challenge period
    boa.env.time_travel(seconds=CHALLENGE_PERIOD - 1)
    with boa.env.prank(operator):
        escrow.claim_channel(cid, 6 * USD, voucher(wallet, escrow_domain, cid, 6 * USD))
    boa.env.time_travel(seconds=1)
    with boa.env.prank(operator), boa.reverts("escrow: channel not claimable"):
        escrow.claim_channel(cid, 7 * USD, voucher(wallet, escrow_domain, cid, 7 * USD))
    anyone = boa.env.generate_address()
    with boa.env.prank(anyone):
        escrow.finalize_close(cid)
        closed = logs(escrow, "ChannelClosed")[0]
        assert (closed.paid_to_operator, closed.refunded) == (6 * USD, 4 * USD)
        with boa.reverts("escrow: channel not closing"):
            escrow.finalize_close(cid)
    assert token.balanceOf(wallet.address) == before + 4 * USD
    assert escrow.channels(cid).status == CLOSED


def test_cooperative_close_during_challenge(
    escrow: Any, token: Any, wallet: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    with boa.env.prank(wallet.address):
        escrow.start_close(cid)
    with boa.env.prank(operator):
        escrow.close_cooperative(cid, 9 * USD, voucher(wallet, escrow_domain, cid, 9 * USD))
        closed = logs(escrow, "ChannelClosed")[0]
    assert (closed.paid_to_operator, closed.refunded) == (9 * USD, USD)
    # after the challenge period the operator can still close, but no longer claim
    cid2 = open_channel(escrow, wallet, operator, 10 * USD)
    with boa.env.prank(wallet.address):
        escrow.start_close(cid2)
    boa.env.time_travel(seconds=CHALLENGE_PERIOD)
    with boa.env.prank(operator):
        with boa.reverts("escrow: channel not claimable"):
            escrow.close_cooperative(cid2, USD, voucher(wallet, escrow_domain, cid2, USD))
        escrow.close_cooperative(cid2, 0, b"")
        assert logs(escrow, "ChannelClosed")[0].refunded == 10 * USD


def test_claim_channel_upto_settles_metered_usage(
    escrow: Any, token: Any, wallet: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    """The voucher is the payer's ceiling; the operator claims only what it metered."""
    cid = open_channel(escrow, wallet, operator, 10 * USD)
    sig = voucher(wallet, escrow_domain, cid, 3 * USD)
    before = token.balanceOf(operator)
    with boa.env.prank(operator):
        escrow.claim_channel_upto(cid, 3 * USD, sig, USD)  # metered 1 of the 3 authorized
        assert escrow.channels(cid)[3] == USD
        escrow.claim_channel_upto(cid, 3 * USD, sig, 2 * USD)  # the same voucher, more usage
        assert escrow.channels(cid)[3] == 2 * USD
        escrow.claim_channel_upto(cid, 3 * USD, sig, 9 * USD)  # never beyond the voucher
        assert escrow.channels(cid)[3] == 3 * USD
        with boa.reverts("escrow: nothing to claim"):
            escrow.claim_channel_upto(cid, 3 * USD, sig, 3 * USD)
        escrow.close_cooperative(cid, 0, b"")  # closes without claiming more
    assert token.balanceOf(operator) - before == 3 * USD
    assert escrow.channels(cid)[5] == CLOSED
    with boa.env.prank(wallet.address), boa.reverts("escrow: not the channel operator"):
        escrow.claim_channel_upto(cid, 3 * USD, sig, USD)
