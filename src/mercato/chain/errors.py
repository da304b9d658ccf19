"""Errors raised by the chain layer, all inside Mercato's one error tree."""

from __future__ import annotations

from mercato.errors import ConfigError, MercatoError


class ChainError(MercatoError):
    """Something went wrong talking to, or on, the chain."""

    status = 502
    type = "server_error"
    code = "chain_error"


class ChainUnavailable(ChainError):
    """The JSON-RPC endpoint did not answer."""

    status = 503
    code = "chain_unavailable"


class ContractReverted(ChainError):
    """A contract call or transaction reverted; ``reason`` is the contract's message."""

    code = "contract_reverted"

    def __init__(
        self,
        reason: str,
        *,
        function: str | None = None,
        tx_hash: str | None = None,
    ) -> None:
        where = f"{function}: " if function else ""
        super().__init__(f"{where}reverted: {reason}" if reason else f"{where}reverted")
        self.reason = reason
        self.function = function
        self.tx_hash = tx_hash


class TransactionTimeout(ChainError):
    """A transaction was sent but no receipt arrived in time."""

    status = 504
    code = "transaction_timeout"


class CompileError(ChainError):
    """A Vyper source did not compile (or no compiled artifact could be found)."""

    status = 500
    code = "contract_compile_error"


class ManifestError(ConfigError):
    """The deployment manifest is missing, unreadable or does not match the chain."""

    code = "manifest_error"


class AnvilError(ChainError):
    """The local devnet (anvil) could not be started or stopped."""

    status = 500
    code = "anvil_error"


class AnvilNotFound(AnvilError):
    code = "anvil_not_found"


class PortInUse(AnvilError):
    code = "port_in_use"
