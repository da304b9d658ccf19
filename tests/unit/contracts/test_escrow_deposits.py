"""PaymentEscrow deposits and thawing withdrawals."""

from __future__ import annotations

from typing import Any

import boa
import pytest
from eth_account.signers.local import LocalAccount

from mercato.chain.batch import pack_batch
from mercato.protocol import eip712

from .conftest import CHALLENGE_PERIOD, USD, WITHDRAW_DELAY, chain_id, logs, now, sign_spend

pytestmark = pytest.mark.chain

ZERO = "0x" + "00" * 20


def test_constructor(escrow: Any, token: Any, escrow_domain: dict[str, Any]) -> None:
    assert escrow.token() == token.address
    assert escrow.withdraw_delay() == WITHDRAW_DELAY
    assert escrow.challenge_period() == CHALLENGE_PERIOD
    assert escrow.DOMAIN_SEPARATOR() == eip712.domain_separator(escrow_domain)
    fields, name, version, cid, contract, _salt, _ext = escrow.eip712Domain()
    assert (fields, name, version, cid, contract) == (
        b"\x0f",
        "Mercato PaymentEscrow",
        "1",
        chain_id(),
        escrow.address,
    )


def test_constructor_rejects_zero_token(escrow_factory: Any) -> None:
    with boa.reverts("escrow: zero token"):
        escrow_factory.deploy(ZERO, 1, 1)


def test_deposit_and_deposit_for(escrow: Any, token: Any, mint: Any, payer: LocalAccount) -> None:
    sponsor = boa.env.generate_address()
    mint(payer.address, 10 * USD)
    mint(sponsor, 10 * USD)
    with boa.env.prank(payer.address):
        token.approve(escrow.address, 2**256 - 1)
        escrow.deposit(3 * USD)
        ev = logs(escrow, "Deposited")[0]
        assert (ev.payer, ev.amount, ev.balance) == (payer.address, 3 * USD, 3 * USD)
    with boa.env.prank(sponsor):
        token.approve(escrow.address, 2**256 - 1)
        escrow.deposit_for(payer.address, 2 * USD)
        ev = logs(escrow, "Deposited")[0]
        assert (ev.payer, ev.amount, ev.balance) == (payer.address, 2 * USD, 5 * USD)
        with boa.reverts("escrow: zero payer"):
            escrow.deposit_for(ZERO, 1)
        with boa.reverts("escrow: zero amount"):
            escrow.deposit(0)
        with boa.reverts("erc20: transfer amount exceeds balance"):
            escrow.deposit(11 * USD)
    assert escrow.balance_of(payer.address) == 5 * USD
    assert token.balanceOf(escrow.address) == 5 * USD
    assert token.balanceOf(sponsor) == 8 * USD


def test_deposit_needs_allowance(escrow: Any, mint: Any) -> None:
    who = boa.env.generate_address()
    mint(who, USD)
    with boa.env.prank(who), boa.reverts("erc20: insufficient allowance"):
        escrow.deposit(USD)


def test_withdraw_after_thawing(funded: Any, token: Any, payer: LocalAccount) -> None:
    escrow = funded
    before = token.balanceOf(payer.address)
    with boa.env.prank(payer.address):
        with boa.reverts("escrow: no pending withdrawal"):
            escrow.withdraw()
        with boa.reverts("escrow: amount exceeds balance"):
            escrow.request_withdraw(1_000 * USD + 1)
        escrow.request_withdraw(100 * USD)
        ev = logs(escrow, "WithdrawRequested")[0]
        assert (ev.payer, ev.amount, ev.available_at) == (
            payer.address,
            100 * USD,
            now() + WITHDRAW_DELAY,
        )
        assert escrow.pending_withdrawal(payer.address) == (100 * USD, now() + WITHDRAW_DELAY)
        boa.env.time_travel(seconds=WITHDRAW_DELAY - 1)
        with boa.reverts("escrow: still thawing"):
            escrow.withdraw()
        boa.env.time_travel(seconds=1)
        escrow.withdraw()
        ev = logs(escrow, "Withdrawn")[0]
        assert (ev.payer, ev.amount) == (payer.address, 100 * USD)
        with boa.reverts("escrow: no pending withdrawal"):
            escrow.withdraw()
    assert escrow.balance_of(payer.address) == 900 * USD
    assert token.balanceOf(payer.address) == before + 100 * USD
    assert escrow.pending_withdrawal(payer.address) == (0, 0)


def test_request_replaces_and_zero_cancels(funded: Any, payer: LocalAccount) -> None:
    escrow = funded
    with boa.env.prank(payer.address):
        escrow.request_withdraw(100 * USD)
        boa.env.time_travel(seconds=WITHDRAW_DELAY)
        escrow.request_withdraw(50 * USD)  # a new request restarts the clock
        assert escrow.pending_withdrawal(payer.address) == (50 * USD, now() + WITHDRAW_DELAY)
        with boa.reverts("escrow: still thawing"):
            escrow.withdraw()
        escrow.request_withdraw(0)
        ev = logs(escrow, "WithdrawRequested")[0]
        assert (ev.amount, ev.available_at) == (0, 0)
        assert escrow.pending_withdrawal(payer.address) == (0, 0)
        with boa.reverts("escrow: no pending withdrawal"):
            escrow.withdraw()


def test_thawing_funds_stay_claimable(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    """An operator that served during the thawing delay still collects; the withdrawal
    then pays min(requested, balance)."""
    escrow = funded
    with boa.env.prank(payer.address):
        escrow.request_withdraw(1_000 * USD)
    auth, sig = sign_spend(payer, escrow_domain, operator, 300 * USD, 1, now() + 600)
    with boa.env.prank(operator):
        escrow.claim_batch(*pack_batch([(auth, 300 * USD, sig)]))
    assert token.balanceOf(operator) == 300 * USD
    boa.env.time_travel(seconds=WITHDRAW_DELAY)
    with boa.env.prank(payer.address):
        escrow.withdraw()
        assert logs(escrow, "Withdrawn")[0].amount == 700 * USD
    assert escrow.balance_of(payer.address) == 0
    # a withdrawal whose balance was claimed away completely pays nothing but clears
    with boa.env.prank(payer.address):
        token.approve(escrow.address, 2**256 - 1)
        escrow.deposit(10 * USD)
        escrow.request_withdraw(10 * USD)
    auth, sig = sign_spend(payer, escrow_domain, operator, 10 * USD, 2, now() + 600)
    with boa.env.prank(operator):
        escrow.claim_batch(*pack_batch([(auth, 10 * USD, sig)]))
    boa.env.time_travel(seconds=WITHDRAW_DELAY)
    with boa.env.prank(payer.address):
        escrow.withdraw()
        assert logs(escrow, "Withdrawn")[0].amount == 0
    assert escrow.pending_withdrawal(payer.address) == (0, 0)
