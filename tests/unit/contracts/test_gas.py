"""Gas regression guard for batched settlement.

Gas per settled request = (execution gas + 21,000 + calldata gas) / claims, i.e. what
the operator's transaction would cost on a chain with Prague rules (titanoboa's
py-evm executes the call; the intrinsic part is added here the way the protocol
charges it: 4 gas per zero calldata byte, 16 per non-zero byte, EIP-7623 floor of
10 per token). Access lists are reset before each measured call, like a fresh
transaction. One payer, nonces in one bitmap word, payer elided after the first claim.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import boa
import pytest
from eth_account import Account

from mercato.protocol import eip712

from .conftest import USD, now

pytestmark = pytest.mark.chain


@contextlib.contextmanager
def fresh_transaction() -> Iterator[Callable[[], int]]:
    """Run a call with empty access lists (every account and slot cold, as at the start
    of a transaction) and report its execution gas. py-evm keeps the warm set in a
    journal that also holds the anchors' checkpoints, so the journal is swapped out for
    the call and put back afterwards instead of being reset."""
    db = boa.env.evm.vm.state._account_db
    saved = db._journal_accessed_state
    start = boa.env.get_gas_used()
    db._reset_access_counters()
    try:
        yield lambda: int(boa.env.get_gas_used() - start)
    finally:
        db._journal_accessed_state = saved


def tx_gas(calldata: bytes, execution: int) -> int:
    zeros = calldata.count(0)
    nonzero = len(calldata) - zeros
    standard = 21_000 + 4 * zeros + 16 * nonzero + execution
    floor = 21_000 + 10 * (zeros + 4 * nonzero)
    return max(standard, floor)


def measure(escrow: Any, operator: Any, claims: list[Any]) -> int:
    calldata = escrow.claim_batch.prepare_calldata(claims)
    with boa.env.prank(operator), fresh_transaction() as used:
        escrow.claim_batch(claims)
        return tx_gas(calldata, used())


@pytest.fixture
def settle(funded: Any, payer: Any, operator: Any, mint: Any) -> Any:
    """Build and measure a batch of n claims from `payer` in nonce word `word`."""
    escrow = funded
    mint(operator, 1)  # the operator already holds tokens (steady state)
    separator = bytes(escrow.DOMAIN_SEPARATOR())
    deadline = now() + 3_600

    def _settle(word: int, n: int, start: int = 0) -> int:
        items = []
        for i in range(n):
            nonce = (word << 8) | (start + i)
            auth = eip712.SpendAuthorization(payer.address, str(operator), USD, nonce, deadline)
            sig = bytes(Account.unsafe_sign_hash(auth.digest(separator), payer.key).signature)
            items.append((auth, 123_456, sig))
        return measure(escrow, operator, eip712.pack_claims(items))

    return _settle


def test_gas_per_claim(settle: Any, capsys: pytest.CaptureFixture[str]) -> None:
    results = {}
    for n in (1, 10, 100):
        fresh = settle(word=10 + n, n=n)  # the batch opens a fresh nonce word
        settle(word=20 + n, n=1, start=255)  # the word already holds a bit ...
        used = settle(word=20 + n, n=n)  # ... so this batch rewrites it
        results[n] = (fresh / n, used / n)
    with capsys.disabled():
        for n, (fresh, used) in results.items():
            print(
                f"\nclaim_batch n={n:3d}: {fresh:8.0f} gas/claim (fresh word),"
                f" {used:8.0f} (used word)"
            )
    fresh100, used100 = results[100]
    # measured 6,277 / 6,078 with vyper 0.4.3; fail loudly on regressions
    assert used100 < 6_150
    assert fresh100 < 6_350


def test_gas_channel_claim(
    funded: Any, payer: Any, operator: Any, escrow_domain: dict[str, Any], mint: Any
) -> None:
    """One voucher claim settles any number of requests on a channel."""
    escrow = funded
    mint(operator, 1)
    with boa.env.prank(payer.address):
        cid = escrow.open_channel(operator, 100 * USD, b"\x01" * 32)
    sig = bytes(
        payer.sign_typed_data(
            full_message=eip712.voucher_typed_data(escrow_domain, cid, 5 * USD)
        ).signature
    )
    calldata = escrow.claim_channel.prepare_calldata(cid, 5 * USD, sig)
    with boa.env.prank(operator), fresh_transaction() as used:
        escrow.claim_channel(cid, 5 * USD, sig)
        gas = tx_gas(calldata, used())
    assert gas < 75_000  # measured 72,639 (first claim: claimed goes 0 -> non-zero)
