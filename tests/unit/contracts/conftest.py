"""In-process (titanoboa) fixtures for the Vyper contracts.

titanoboa's pytest plugin runs every test (and fixture set-up) inside
``boa.env.anchor()``, so state never leaks between tests; compiled contracts are
cached per session (and on disk by boa).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boa
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.protocol import eip712

CONTRACTS = Path(__file__).resolve().parents[3] / "contracts"

WITHDRAW_DELAY = 3_600
CHALLENGE_PERIOD = 7_200
MIN_STAKE = 1_000_000_000  # 1,000 mUSD
UNSTAKE_DELAY = 86_400
USD = 10**6


def account(seed: int) -> LocalAccount:
    return Account.from_key(seed.to_bytes(32, "big"))


@pytest.fixture(scope="session")
def token_factory() -> Any:
    return boa.load_partial(str(CONTRACTS / "PaymentToken.vy"))


@pytest.fixture(scope="session")
def registry_factory() -> Any:
    return boa.load_partial(str(CONTRACTS / "OperatorRegistry.vy"))


@pytest.fixture(scope="session")
def escrow_factory() -> Any:
    return boa.load_partial(str(CONTRACTS / "PaymentEscrow.vy"))


@pytest.fixture
def deployer() -> Any:
    addr = boa.env.generate_address("deployer")
    boa.env.eoa = addr
    return addr


@pytest.fixture
def faucet() -> Any:
    return boa.env.generate_address("faucet")


@pytest.fixture
def token(token_factory: Any, deployer: Any, faucet: Any) -> Any:
    with boa.env.prank(deployer):
        return token_factory.deploy(faucet)


@pytest.fixture
def mint(token: Any, faucet: Any) -> Any:
    def _mint(to: Any, amount: int) -> None:
        with boa.env.prank(faucet):
            token.mint(to, amount)

    return _mint


@pytest.fixture
def escrow(escrow_factory: Any, token: Any, deployer: Any) -> Any:
    with boa.env.prank(deployer):
        return escrow_factory.deploy(token.address, WITHDRAW_DELAY, CHALLENGE_PERIOD)


@pytest.fixture
def payer() -> LocalAccount:
    return account(0xA11CE)


@pytest.fixture
def payer2() -> LocalAccount:
    return account(0xB0B)


@pytest.fixture
def operator() -> Any:
    return boa.env.generate_address("operator")


@pytest.fixture
def operator2() -> Any:
    return boa.env.generate_address("operator2")


def chain_id() -> int:
    return int(boa.env.evm.patch.chain_id)


def now() -> int:
    return int(boa.env.evm.patch.timestamp)


@pytest.fixture
def escrow_domain(escrow: Any) -> dict[str, Any]:
    return eip712.escrow_domain(chain_id(), str(escrow.address))


@pytest.fixture
def funded(escrow: Any, mint: Any, token: Any, payer: LocalAccount, payer2: LocalAccount) -> Any:
    """Payers with 1,000 mUSD each deposited in the escrow and 1,000 more in the wallet."""
    for p in (payer, payer2):
        mint(p.address, 2_000 * USD)
        with boa.env.prank(p.address):
            token.approve(escrow.address, 2**256 - 1)
            escrow.deposit(1_000 * USD)
    return escrow


def logs(contract: Any, name: str) -> list[Any]:
    """Decoded events called ``name`` from the contract's last call (incl. child calls)."""
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def sign_typed(acct: LocalAccount, full_message: dict[str, Any]) -> bytes:
    return bytes(acct.sign_typed_data(full_message=full_message).signature)


def sign_spend(
    acct: LocalAccount,
    domain: dict[str, Any],
    operator: Any,
    max_amount: int,
    nonce: int,
    deadline: int,
) -> tuple[eip712.SpendAuthorization, bytes]:
    auth = eip712.SpendAuthorization(acct.address, str(operator), max_amount, nonce, deadline)
    return auth, sign_typed(acct, auth.typed_data(domain))


def sign_settlement(
    acct: LocalAccount,
    domain: dict[str, Any],
    operator: Any,
    word: int,
    mask: int,
    total: int,
    deadline: int,
) -> tuple[eip712.SpendSettlement, bytes]:
    settlement = eip712.SpendSettlement(acct.address, str(operator), word, mask, total, deadline)
    return settlement, sign_typed(acct, settlement.typed_data(domain))
