"""docs/protocols/spendauth.md and channels.md worked examples, recomputed and settled.

Every value in the docs' tagged blocks is recomputed with ``mercato.protocol.eip712``
and with eth_account's generic encoder, and the documented claim / voucher is submitted
to a PaymentEscrow deployed (in-process, titanoboa) at the documented address on chain
31337 (spend authorizations' batch: tests/unit/contracts/test_spendauth_doc.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boa
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from mercato.protocol import eip712
from tests.helpers import doc_blocks

pytestmark = pytest.mark.chain

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PAYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
OPERATOR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
CHAIN_ID = 31337


def hx(value: bytes) -> str:
    return "0x" + value.hex()


def eth_account_digest(full_message: dict[str, Any]) -> bytes:
    signable = encode_typed_data(full_message=full_message)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


@pytest.fixture
def chain() -> Iterator[tuple[Any, Any]]:
    """Token + escrow at the documented address on chain 31337, payer funded."""
    with boa.env.anchor():
        boa.env.evm.patch.chain_id = CHAIN_ID
        boa.env.evm.patch.timestamp = 1_767_000_000  # before the example's deadline
        faucet = boa.env.generate_address()
        token = boa.load(str(CONTRACTS / "PaymentToken.vy"), faucet)
        escrow = boa.load_partial(str(CONTRACTS / "PaymentEscrow.vy")).deploy(
            token.address, 3600, 7200, override_address=ESCROW
        )
        with boa.env.prank(faucet):
            token.mint(PAYER, 100 * 10**6)
        with boa.env.prank(PAYER):
            token.approve(escrow.address, 2**256 - 1)
            escrow.deposit(10 * 10**6)
        yield token, escrow


def test_spendauth_example_values() -> None:
    ex = doc_blocks("spendauth.md", "spendauth-example")
    domain = eip712.escrow_domain(CHAIN_ID, ESCROW)
    auth = eip712.SpendAuthorization(PAYER, OPERATOR, 2_000_000, 0x2A07, 1_767_225_600)
    documented = json.loads(ex["typed-data"])
    assert documented == auth.typed_data(domain)

    separator = eip712.domain_separator(domain)
    assert hx(eip712.SPEND_AUTHORIZATION_TYPEHASH) == ex["typehash"]
    assert hx(keccak(text=eip712.SPEND_AUTHORIZATION_TYPE)) == ex["typehash"]
    assert hx(separator) == ex["domain-separator"]
    assert hx(encode_typed_data(full_message=documented).header) == ex["domain-separator"]
    assert hx(auth.struct_hash()) == ex["struct-hash"]
    assert hx(encode_typed_data(full_message=documented).body) == ex["struct-hash"]
    assert hx(auth.digest(separator)) == ex["digest"]
    assert hx(eth_account_digest(documented)) == ex["digest"]

    signed = Account.sign_typed_data(KEY, full_message=documented)
    assert hx(signed.message_hash) == ex["digest"]
    assert hx(bytes(signed.signature)) == ex["signature"]
    assert eip712.recover_signer(auth.digest(separator), bytes(signed.signature)) == PAYER
    # the claim_batch part (groups, claims, calldata, settling) is checked by
    # tests/unit/contracts/test_spendauth_doc.py


def test_channels_example_values() -> None:
    ex = doc_blocks("channels.md", "channels-example")
    domain = eip712.escrow_domain(CHAIN_ID, ESCROW)
    cid = eip712.channel_id(ESCROW, CHAIN_ID, PAYER, OPERATOR, bytes(31) + b"\x01")
    assert hx(cid) == ex["channel-id"]
    voucher = eip712.Voucher(cid, 1_500_000)
    documented = json.loads(ex["typed-data"])
    assert documented == voucher.typed_data(domain)

    separator = eip712.domain_separator(domain)
    assert hx(eip712.VOUCHER_TYPEHASH) == ex["typehash"]
    assert hx(separator) == ex["domain-separator"]
    assert hx(voucher.struct_hash()) == ex["struct-hash"]
    assert hx(encode_typed_data(full_message=documented).body) == ex["struct-hash"]
    assert hx(voucher.digest(separator)) == ex["digest"]
    assert hx(eth_account_digest(documented)) == ex["digest"]
    signed = Account.sign_typed_data(KEY, full_message=documented)
    assert hx(bytes(signed.signature)) == ex["signature"]


def test_channels_example_claims(chain: tuple[Any, Any]) -> None:
    token, escrow = chain
    ex = doc_blocks("channels.md", "channels-example")
    with boa.env.prank(PAYER):
        cid = escrow.open_channel(OPERATOR, 5 * 10**6, bytes(31) + b"\x01")
    assert hx(cid) == ex["channel-id"]
    with boa.env.prank(OPERATOR):
        escrow.claim_channel(cid, 1_500_000, bytes.fromhex(ex["signature"][2:]))
        claimed = next(e for e in escrow.get_logs() if type(e).__name__ == "ChannelClaimed")
    assert (claimed.amount, claimed.total_claimed) == (1_500_000, 1_500_000)
    assert token.balanceOf(OPERATOR) == 1_500_000
