"""docs/protocols/spendauth.md, "Spend settlements", worked example: typed data, type
hash, struct hash, digest, signature and calldata recomputed with
``mercato.protocol.eip712``, eth_account and eth_abi, and the documented calldata sent
as is to a PaymentEscrow deployed (titanoboa) at the documented address on chain 31337,
beside the documented claim_batch of the same two nonces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boa
import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from mercato.chain.batch import pack_settlement, unpack_settlement
from mercato.client.payments import EscrowRef, sign_spend_settlement
from mercato.payments.wire import SignedSpendSettlement
from mercato.protocol import eip712
from tests.helpers import doc_blocks

from .conftest import CONTRACTS

pytestmark = pytest.mark.chain

KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PAYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
OPERATOR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
CHAIN_ID = 31337
DEADLINE = 1_767_225_600
SETTLEMENT = eip712.SpendSettlement(PAYER, OPERATOR, 0x2A, 1 << 7 | 1 << 8, 1_734_567, DEADLINE)


def hx(value: bytes) -> str:
    return "0x" + value.hex()


def documented() -> dict[str, str]:
    return doc_blocks("spendauth.md", "spendsettlement-example")


def test_settlement_values() -> None:
    ex = documented()
    domain = eip712.escrow_domain(CHAIN_ID, ESCROW)
    typed = json.loads(ex["typed-data"])
    assert typed == SETTLEMENT.typed_data(domain)
    assert SETTLEMENT.nonces == [0x2A07, 0x2A08]  # the example's two authorizations

    assert hx(eip712.SPEND_SETTLEMENT_TYPEHASH) == ex["typehash"]
    assert hx(keccak(text=eip712.SPEND_SETTLEMENT_TYPE)) == ex["typehash"]
    assert hx(SETTLEMENT.struct_hash()) == ex["struct-hash"]
    assert hx(encode_typed_data(full_message=typed).body) == ex["struct-hash"]
    separator = eip712.domain_separator(domain)
    assert hx(SETTLEMENT.digest(separator)) == ex["digest"]

    signed = Account.sign_typed_data(KEY, full_message=typed)
    assert hx(bytes(signed.message_hash)) == ex["digest"]
    assert hx(bytes(signed.signature)) == ex["signature"]
    assert eip712.recover_signer(SETTLEMENT.digest(separator), bytes(signed.signature)) == PAYER

    selector, *words = ex["calldata"].splitlines()
    sig = "claim_settlements((uint256,uint256,uint256,bytes32,bytes32)[])"
    assert bytes.fromhex(selector) == keccak(text=sig)[:4]
    packed = pack_settlement(SETTLEMENT, bytes(signed.signature))
    body = encode(["(uint256,uint256,uint256,bytes32,bytes32)[]"], [[packed]])
    assert bytes.fromhex("".join(words)) == body
    assert unpack_settlement(packed) == (int(PAYER, 16), 1_734_567, 0x2A, 384, DEADLINE)


def test_request_body() -> None:
    """The endpoint's body: what the SDK sends for the example, and what the operator
    reads back from the documented bytes."""
    documented_body = documented()["request-body"]
    signed = sign_spend_settlement(
        Account.from_key(KEY), EscrowRef(CHAIN_ID, ESCROW), OPERATOR, 0x2A,
        {7: 1_234_567, 8: 500_000}, deadline=DEADLINE,
    )  # fmt: skip
    assert json.loads(documented_body) == signed.to_doc()
    assert hx(signed.signature) == documented()["signature"]
    parsed = SignedSpendSettlement.from_json(documented_body.encode())
    assert parsed.settlement == eip712.SpendSettlement(
        PAYER.lower(), OPERATOR.lower(), 0x2A, 384, 1_734_567, DEADLINE
    )
    assert (parsed.chain_id, parsed.escrow) == (CHAIN_ID, ESCROW.lower())


@pytest.fixture
def escrow() -> Iterator[tuple[Any, Any]]:
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


def send(contract: Any, calldata: bytes) -> dict[str, list[Any]]:
    computation = boa.env.raw_call(contract.address, sender=OPERATOR, data=calldata)
    assert computation.is_success
    out: dict[str, list[Any]] = {}
    for e in contract.get_logs(computation):
        out.setdefault(type(e).__name__, []).append(e)
    return out


def test_documented_calldata_settles(escrow: tuple[Any, Any]) -> None:
    token, contract = escrow
    selector, *words = documented()["calldata"].splitlines()
    calldata = bytes.fromhex(selector + "".join(words))
    assert contract.spend_settlement_digest(*vars_of(SETTLEMENT)) == bytes.fromhex(
        documented()["digest"][2:]
    )

    ev = send(contract, calldata)
    (spent,) = ev["SpendsSettled"]
    assert (spent.payer, spent.operator, spent.word, spent.mask, spent.amount) == (
        PAYER,
        OPERATOR,
        42,
        384,
        1_734_567,
    )
    (transfer,) = ev["Transfer"]
    assert (transfer.sender, transfer.receiver, transfer.value) == (ESCROW, OPERATOR, 1_734_567)
    assert token.balanceOf(OPERATOR) == 1_734_567
    assert contract.balance_of(PAYER) == 10 * 10**6 - 1_734_567

    ev = send(contract, calldata)
    assert [(e.payer, e.word, e.mask, e.reason) for e in ev["SettlementRejected"]] == [
        (PAYER, 42, 384, 3)
    ]
    assert "SpendsSettled" not in ev and "Transfer" not in ev

    # the documented claim_batch of the same two authorizations is now refused
    batch = doc_blocks("spendauth.md", "spendauth-batch")["calldata"].splitlines()
    ev = send(contract, bytes.fromhex("".join(batch)))
    assert [(e.nonce, e.reason) for e in ev["ClaimRejected"]] == [(10759, 3), (10760, 3)]
    assert token.balanceOf(OPERATOR) == 1_734_567


def vars_of(s: eip712.SpendSettlement) -> tuple[str, str, int, int, int, int]:
    return (s.payer, s.operator, s.word, s.mask, s.total, s.deadline)
