"""One paid operator on anvil, from the payments test fixtures."""

from tests.integration.payments.conftest import (
    anvil,
    anvil_binary,
    chain,
    faucet,
    manifest,
    new_account,
    paid_operator,
    payer,
)

__all__ = ["anvil", "anvil_binary", "chain", "faucet", "manifest", "new_account",
           "paid_operator", "payer"]  # fmt: skip
