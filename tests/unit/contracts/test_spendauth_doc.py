"""docs/protocols/spendauth.md, the claim_batch part of the worked example: the groups,
claims and calldata are recomputed from the documented authorizations with
``mercato.chain.batch`` and eth_abi, and the documented calldata is sent as is to a
PaymentEscrow deployed (titanoboa) at the documented address on chain 31337."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boa
import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils.crypto import keccak

from mercato.chain.batch import pack_batch, unpack_word
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


def documented() -> dict[str, str]:
    return doc_blocks("spendauth.md", "spendauth-example") | doc_blocks(
        "spendauth.md", "spendauth-batch"
    )


def signed_claims() -> list[Any]:
    """The example's two authorizations, signed from their typed data, and the amounts."""
    domain = eip712.escrow_domain(CHAIN_ID, ESCROW)
    out = []
    for nonce, amount in ((0x2A07, 1_234_567), (0x2A08, 500_000)):
        auth = eip712.SpendAuthorization(PAYER, OPERATOR, 2_000_000, nonce, DEADLINE)
        sig = bytes(Account.sign_typed_data(KEY, full_message=auth.typed_data(domain)).signature)
        out.append((auth, amount, sig))
    return out


def test_batch_values() -> None:
    ex = documented()
    first, second = signed_claims()
    typed = json.loads(ex["typed-data"])
    assert typed["message"]["nonce"] == first[0].nonce  # the same authorization as above
    assert "0x" + first[2].hex() == ex["signature"]
    assert "0x" + second[2].hex() == ex["second-signature"]

    groups, claims = pack_batch([first, second])
    (group_line,) = ex["groups"].splitlines()
    _, payer, _, word_count = group_line.split()
    assert groups == [(int(payer, 16), int(word_count, 16))]
    assert groups[0] == (int(PAYER, 16), 0x2A << 8 | 2)

    lines = [line.split() for line in ex["claims"].splitlines()]
    rows = [lines[i : i + 3] for i in range(0, len(lines), 3)]
    assert [r[0] for row in rows for r in row] == ["packed", "r", "vs"] * 2
    assert claims == [
        (int(row[0][1], 16), bytes.fromhex(row[1][1][2:]), bytes.fromhex(row[2][1][2:]))
        for row in rows
    ]
    assert unpack_word(claims[0][0]) == (DEADLINE, 2_000_000, 1_234_567, 7)
    assert unpack_word(claims[1][0]) == (DEADLINE, 2_000_000, 500_000, 8)

    selector, *words = ex["calldata"].splitlines()
    signature = "claim_batch((uint256,uint256)[],(uint256,bytes32,bytes32)[])"
    assert bytes.fromhex(selector) == keccak(text=signature)[:4]
    body = encode(["(uint256,uint256)[]", "(uint256,bytes32,bytes32)[]"], [groups, claims])
    assert bytes.fromhex("".join(words)) == body


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


def test_documented_calldata_settles(escrow: tuple[Any, Any]) -> None:
    token, contract = escrow
    selector, *words = documented()["calldata"].splitlines()
    calldata = bytes.fromhex(selector + "".join(words))
    assert calldata == contract.claim_batch.prepare_calldata(*pack_batch(signed_claims()))

    def send() -> dict[str, list[Any]]:
        computation = boa.env.raw_call(contract.address, sender=OPERATOR, data=calldata)
        assert computation.is_success
        out: dict[str, list[Any]] = {}
        for e in contract.get_logs(computation):
            out.setdefault(type(e).__name__, []).append(e)
        return out

    ev = send()
    (spent,) = ev["SpendsClaimed"]
    assert (spent.payer, spent.operator, spent.word, spent.mask, spent.amount) == (
        PAYER,
        OPERATOR,
        42,
        1 << 7 | 1 << 8,
        1_734_567,
    )
    (batch,) = ev["BatchSettled"]
    assert (batch.operator, batch.count, batch.total) == (OPERATOR, 2, 1_734_567)
    assert token.balanceOf(OPERATOR) == 1_734_567
    assert contract.balance_of(PAYER) == 10 * 10**6 - 1_734_567

    ev = send()
    assert [(e.payer, e.nonce, e.reason) for e in ev["ClaimRejected"]] == [
        (PAYER, 10759, 3),
        (PAYER, 10760, 3),
    ]
    assert (ev["BatchSettled"][0].count, ev["BatchSettled"][0].total) == (0, 0)
    assert "SpendsClaimed" not in ev
    assert token.balanceOf(OPERATOR) == 1_734_567
