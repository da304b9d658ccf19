from __future__ import annotations

import dataclasses
import time

import pytest
from eth_account import Account

from mercato.client.payments import (
    EscrowRef,
    NonceAllocator,
    sign_spend_authorization,
    sign_voucher,
)
from mercato.payments.errors import PaymentRejected, Reason
from mercato.payments.rules import (
    ChannelFacts,
    PaymentContext,
    check_spend_authorization,
    check_voucher,
)
from mercato.payments.wire import SignedSpendAuthorization, SignedVoucher
from mercato.protocol.eip712 import domain_separator, escrow_domain, nonce_bit, nonce_word

ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
PAYER = Account.create()
OPERATOR = Account.create().address
REF = EscrowRef(31337, ESCROW)
CTX = PaymentContext(OPERATOR, 31337, ESCROW, domain_separator(escrow_domain(31337, ESCROW)), 120)
NOW = int(time.time())


def auth(**kw: object) -> SignedSpendAuthorization:
    args = {"max_amount": 1000, "nonce": 7, **kw}
    return sign_spend_authorization(PAYER, REF, OPERATOR, **args)  # type: ignore[arg-type]


def test_spend_authorization_reasons() -> None:
    assert check_spend_authorization(auth(), CTX, 1000, NOW) is None
    assert check_spend_authorization(auth(), CTX, 1001, NOW) is Reason.MAX_BELOW_ESTIMATE
    other = sign_spend_authorization(PAYER, REF, PAYER.address, 1000, 7)
    assert check_spend_authorization(other, CTX, 10, NOW) is Reason.WRONG_OPERATOR
    chain1 = sign_spend_authorization(PAYER, EscrowRef(1, ESCROW), OPERATOR, 1000, 7)
    assert check_spend_authorization(chain1, CTX, 10, NOW) is Reason.WRONG_CHAIN
    soon = auth(deadline=NOW + 60)  # valid, but too close to settle in time
    assert check_spend_authorization(soon, CTX, 10, NOW) is Reason.EXPIRED
    good = auth()
    tampered = dataclasses.replace(good, auth=dataclasses.replace(good.auth, max_amount=10**6))
    assert check_spend_authorization(tampered, CTX, 10, NOW) is Reason.BAD_SIGNATURE
    garbage = dataclasses.replace(good, signature=b"\x01" * 65)
    assert check_spend_authorization(garbage, CTX, 10, NOW) is Reason.BAD_SIGNATURE


def facts(**kw: object) -> ChannelFacts:
    base = {
        "payer": PAYER.address,
        "operator": OPERATOR,
        "deposit": 10_000,
        "open": True,
        "best_cumulative": 100,
        "owed": 50,
    }
    return ChannelFacts(**{**base, **kw})  # type: ignore[arg-type]


def test_voucher_reasons() -> None:
    cid = b"\x22" * 32
    v = sign_voucher(PAYER, REF, cid, 500)
    assert check_voucher(v, facts(), CTX, 400, 0) is None
    assert check_voucher(v, facts(), CTX, 451, 0) is Reason.CREDIT_LIMIT
    assert check_voucher(v, facts(), CTX, 451, 1) is None  # within the configured credit
    assert check_voucher(v, facts(best_cumulative=500), CTX, 1, 0) is Reason.VOUCHER_NOT_INCREASING
    assert check_voucher(v, facts(deposit=499), CTX, 1, 0) is Reason.VOUCHER_EXCEEDS_DEPOSIT
    assert check_voucher(v, facts(open=False), CTX, 1, 0) is Reason.CHANNEL_NOT_OPEN
    assert check_voucher(v, None, CTX, 1, 0) is Reason.CHANNEL_UNKNOWN
    assert check_voucher(v, facts(payer=OPERATOR), CTX, 1, 0) is Reason.BAD_SIGNATURE
    assert check_voucher(v, facts(operator=PAYER.address), CTX, 1, 0) is Reason.WRONG_OPERATOR


def test_headers_round_trip_and_refuse_garbage() -> None:
    signed = auth()
    decoded = SignedSpendAuthorization.decode(signed.encode())
    assert decoded.auth.payer == PAYER.address.lower() and decoded.signature == signed.signature
    assert SignedSpendAuthorization.decode(decoded.encode()) == decoded
    v = sign_voucher(PAYER, REF, b"\x01" * 32, 5)
    assert SignedVoucher.decode(v.encode()) == dataclasses.replace(v, escrow=ESCROW.lower())
    for bad in ("", "!!!", "W10", "eyJwYXllciI6MX0"):
        with pytest.raises(PaymentRejected) as info:
            SignedSpendAuthorization.decode(bad)
        assert info.value.reason is Reason.MALFORMED and info.value.status == 402


def test_nonces_are_dense_within_a_word() -> None:
    alloc = NonceAllocator()
    nonces = [alloc.next() for _ in range(300)]
    assert len(set(nonces)) == 300
    assert {nonce_word(n) for n in nonces[:256]} == {nonce_word(nonces[0])}
    assert [nonce_bit(n) for n in nonces[:3]] == [0, 1, 2]


def test_allow_list_matches_token_hashes_only() -> None:
    import hashlib

    from mercato.payments.service import PaymentService

    listed = hashlib.sha256(b"local-dev-key").hexdigest()
    svc = PaymentService(None, None, None, allow_key_hashes=frozenset({listed}))  # type: ignore[arg-type]
    assert svc.allowed_free({"authorization": "Bearer local-dev-key"})
    assert not svc.allowed_free({"authorization": "Bearer local-dev-kez"})
    assert not svc.allowed_free({"authorization": listed})  # the hash itself is no key
    assert not svc.allowed_free({})
