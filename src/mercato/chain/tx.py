"""Signing and sending transactions from a local key: nonces, fees, receipts, reverts.

:class:`TxSender` signs with an ``eth_account`` :class:`LocalAccount` (the key never
leaves the process), keeps its own nonce counter so concurrent sends from one account
do not collide, estimates gas (a revert during estimation surfaces as
:class:`ContractReverted` before anything is sent), waits for the receipt and turns a
failed receipt into :class:`ContractReverted` with the reason replayed by ``eth_call``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    Web3RPCError,
)
from web3.types import TxParams, TxReceipt

from mercato.chain.errors import (
    ChainError,
    ChainUnavailable,
    ContractReverted,
    TransactionTimeout,
)

_REVERT_PREFIXES = ("execution reverted: ", "execution reverted", "VM Exception while processing")


def revert_reason(exc: ContractLogicError) -> str:
    """The contract's own message out of web3's ``execution reverted: <reason>``."""
    message = exc.message or (str(exc.args[0]) if exc.args else "")
    for prefix in _REVERT_PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :].strip()
    return message.strip()


@contextlib.contextmanager
def translate_errors(function: str | None = None) -> Any:
    """Turn web3/aiohttp failures into the chain error tree."""
    try:
        yield
    except ContractLogicError as exc:
        raise ContractReverted(revert_reason(exc), function=function) from exc
    except ProviderConnectionError as exc:
        raise ChainUnavailable(f"chain RPC unreachable: {exc}") from exc
    except (TimeoutError, OSError) as exc:
        raise ChainUnavailable(f"chain RPC unreachable: {exc}") from exc
    except _aiohttp_errors() as exc:
        raise ChainUnavailable(f"chain RPC unreachable: {exc}") from exc
    except Web3RPCError as exc:
        raise ChainError(f"{function or 'rpc'}: {exc}") from exc


def _aiohttp_errors() -> tuple[type[BaseException], ...]:
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - web3 depends on aiohttp
        return ()
    return (aiohttp.ClientError,)


@dataclass(frozen=True)
class FeePolicy:
    """EIP-1559 fees: ``max_fee = base_fee * base_fee_multiplier + priority fee``."""

    base_fee_multiplier: int = 2
    priority_fee: int | None = None  # None: ask the node (eth_maxPriorityFeePerGas)
    gas_multiplier: float = 1.2  # head-room on the gas estimate
    legacy: bool = False  # gasPrice instead of EIP-1559 (chains without it)


class TxSender:
    """Sends transactions for one account; safe to share between concurrent tasks."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        account: LocalAccount,
        *,
        fees: FeePolicy | None = None,
        receipt_timeout: float = 120.0,
        poll_interval: float = 0.05,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.fees = fees or FeePolicy()
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self._lock = asyncio.Lock()
        self._nonce: int | None = None
        self._chain_id: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    async def chain_id(self) -> int:
        if self._chain_id is None:
            with translate_errors("eth_chainId"):
                self._chain_id = int(await self.w3.eth.chain_id)
        return self._chain_id

    async def send(
        self,
        to: str | None,
        data: str | bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        label: str | None = None,
    ) -> TxReceipt:
        """Sign and send, wait for the receipt; raise :class:`ContractReverted` on failure.

        ``to=None`` deploys ``data`` as creation code.
        """
        call: dict[str, Any] = {"from": self.address, "data": data, "value": value}
        if to is not None:
            call["to"] = to
        if gas is None:
            with translate_errors(label):
                estimate = await self.w3.eth.estimate_gas(cast(TxParams, call))
            gas = int(estimate * self.fees.gas_multiplier) + 10_000
        tx = dict(call, gas=gas, chainId=await self.chain_id(), **await self._fee_fields())
        async with self._nonce_slot() as nonce:
            tx["nonce"] = nonce
            signed = self.account.sign_transaction(tx)
            with translate_errors(label):
                tx_hash = await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        try:
            with translate_errors(label):
                receipt = await self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.receipt_timeout, poll_latency=self.poll_interval
                )
        except TimeExhausted as exc:
            raise TransactionTimeout(
                f"{label or 'transaction'} {tx_hash.to_0x_hex()} not mined in "
                f"{self.receipt_timeout:g}s"
            ) from exc
        if receipt["status"] != 1:
            reason = await self._replay_reason(call, receipt)
            raise ContractReverted(reason, function=label, tx_hash=tx_hash.to_0x_hex())
        return receipt

    @contextlib.asynccontextmanager
    async def _nonce_slot(self) -> AsyncIterator[int]:
        """The next nonce, held under the lock until the transaction is handed to the node."""
        async with self._lock:
            if self._nonce is None:
                with translate_errors("eth_getTransactionCount"):
                    pending = await self.w3.eth.get_transaction_count(
                        self.account.address, "pending"
                    )
                self._nonce = int(pending)
            try:
                yield self._nonce
            except BaseException:
                self._nonce = None  # unknown whether the node took it: ask again next time
                raise
            self._nonce += 1

    def reset_nonce(self) -> None:
        """Forget the cached nonce (after another process sent from the same key)."""
        self._nonce = None

    async def _fee_fields(self) -> dict[str, int]:
        with translate_errors("fees"):
            if self.fees.legacy:
                return {"gasPrice": int(await self.w3.eth.gas_price)}
            block = await self.w3.eth.get_block("latest")
            base = int(block.get("baseFeePerGas", 0))
            tip = self.fees.priority_fee
            if tip is None:
                tip = int(await self.w3.eth.max_priority_fee)
        return {
            "maxFeePerGas": base * self.fees.base_fee_multiplier + tip,
            "maxPriorityFeePerGas": tip,
        }

    async def _replay_reason(self, call: dict[str, Any], receipt: TxReceipt) -> str:
        """Re-run a failed transaction with ``eth_call`` on the state before its block."""
        block = max(int(receipt["blockNumber"]) - 1, 0)
        try:
            await self.w3.eth.call(cast(TxParams, call), block_identifier=block)
        except ContractLogicError as exc:
            return revert_reason(exc)
        except Exception:  # best effort: the receipt already says it failed
            return "transaction failed (reason unavailable)"
        gas_used = int(receipt["gasUsed"])
        return f"transaction failed (out of gas? used {gas_used})"
