"""docs/protocols/payments.md's header examples decode and verify."""

from __future__ import annotations

from mercato.crypto.signers import recover_digest
from mercato.payments.wire import SignedSpendAuthorization, SignedVoucher
from mercato.protocol.eip712 import domain_separator, escrow_domain, voucher_digest
from tests.helpers import doc_blocks

PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"


def test_spend_authorization_example() -> None:
    signed = SignedSpendAuthorization.decode(
        doc_blocks("payments.md", "payments-example")["spendauth"]
    )
    a = signed.auth
    assert (a.payer, a.operator) == (PAYER.lower(), "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc")
    assert (a.max_amount, a.nonce, a.deadline) == (50_000, 12345 << 8, 1_800_000_000)
    assert (signed.chain_id, signed.escrow) == (31337, ESCROW.lower())
    separator = domain_separator(escrow_domain(31337, ESCROW))
    assert recover_digest(a.digest(separator), signed.signature) == PAYER.lower()
    assert SignedSpendAuthorization.decode(signed.encode()) == signed


def test_voucher_example() -> None:
    voucher = SignedVoucher.decode(doc_blocks("payments.md", "payments-example")["voucher"])
    assert voucher.channel_id == bytes.fromhex("11" * 32) and voucher.cumulative_amount == 150_000
    separator = domain_separator(escrow_domain(31337, ESCROW))
    digest = voucher_digest(separator, voucher.channel_id, voucher.cumulative_amount)
    assert recover_digest(digest, voucher.signature) == PAYER.lower()
