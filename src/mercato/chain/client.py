"""One async client for Mercato's contracts on one chain, built from the manifest.

    async with ChainClient(manifest, account=operator_key) as chain:
        await chain.registry.heartbeat()
        events = await chain.fetch_registry_events(manifest.deployment_block)

The client is cheap to build; it owns one HTTP provider session (closed by
:meth:`ChainClient.close`). :meth:`ChainClient.for_account` gives a client that sends
from another key over the same connection.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, Self

from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3

from mercato.chain.contract import DEFAULT_LOG_CHUNK, EventDecoder, make_web3
from mercato.chain.errors import ManifestError
from mercato.chain.escrow import PaymentEscrow
from mercato.chain.events import EscrowEvent
from mercato.chain.manifest import Manifest
from mercato.chain.registry import OperatorRegistry
from mercato.chain.registry_events import RegistryEvent
from mercato.chain.token import PaymentToken
from mercato.chain.tx import FeePolicy, TxSender, translate_errors


class ChainClient:
    def __init__(
        self,
        manifest: Manifest,
        *,
        rpc_url: str | None = None,
        account: LocalAccount | None = None,
        w3: AsyncWeb3[Any] | None = None,
        fees: FeePolicy | None = None,
        receipt_timeout: float = 120.0,
    ) -> None:
        self.manifest = manifest
        self.rpc_url = rpc_url or manifest.rpc_url
        self.w3 = w3 or make_web3(self.rpc_url)
        self._owns_w3 = w3 is None
        self.sender = (
            TxSender(self.w3, account, fees=fees, receipt_timeout=receipt_timeout)
            if account is not None
            else None
        )
        self.decoder = EventDecoder()
        addresses, abis = manifest.addresses, manifest.abis
        kwargs: dict[str, Any] = {"sender": self.sender, "decoder": self.decoder}
        self.token = PaymentToken(self.w3, addresses.token, abis["token"], **kwargs)
        self.registry = OperatorRegistry(self.w3, addresses.registry, abis["registry"], **kwargs)
        self.escrow = PaymentEscrow(self.w3, addresses.escrow, abis["escrow"], **kwargs)

    @classmethod
    def load(
        cls,
        manifest_path: Path | None = None,
        *,
        rpc_url: str | None = None,
        account: LocalAccount | None = None,
    ) -> ChainClient:
        """A client from the manifest at ``manifest_path`` (default: the devnet's)."""
        return cls(Manifest.load(manifest_path), rpc_url=rpc_url, account=account)

    @property
    def address(self) -> str | None:
        """The signing account's address (``None`` for a read-only client)."""
        return self.sender.address if self.sender else None

    def for_account(self, account: LocalAccount | None) -> ChainClient:
        """A client over the same connection that sends from ``account``."""
        clone = ChainClient(self.manifest, rpc_url=self.rpc_url, account=account, w3=self.w3)
        if self.sender is not None and clone.sender is not None:
            clone.sender.fees = self.sender.fees
            clone.sender.receipt_timeout = self.sender.receipt_timeout
        return clone

    async def check(self) -> None:
        """Fail early when the RPC endpoint is another chain than the manifest's, or the
        contracts are not deployed there."""
        with translate_errors("eth_chainId"):
            chain_id = int(await self.w3.eth.chain_id)
        if chain_id != self.manifest.chain_id:
            raise ManifestError(
                f"{self.rpc_url} is chain {chain_id}, the manifest is for chain "
                f"{self.manifest.chain_id}"
            )
        for name, address in self.manifest.addresses.model_dump().items():
            with translate_errors("eth_getCode"):
                code = await self.w3.eth.get_code(address)
            if not code:
                raise ManifestError(
                    f"no {name} contract at {address} on {self.rpc_url} (a restarted devnet? "
                    "run `mercato chain up` again)"
                )

    async def block_number(self) -> int:
        with translate_errors("eth_blockNumber"):
            return int(await self.w3.eth.block_number)

    async def fetch_registry_events(
        self,
        from_block: int | None = None,
        to_block: int | None = None,
        *,
        chunk_size: int = DEFAULT_LOG_CHUNK,
    ) -> list[RegistryEvent]:
        """Registry events in ``[from_block, to_block]`` (default: deployment block to
        latest) in (block, log index) order: what a router replays to know operators."""
        start = self.manifest.deployment_block if from_block is None else from_block
        events = await self.registry.fetch_events(start, to_block, chunk_size=chunk_size)
        return [e for e in events if isinstance(e, RegistryEvent)]

    async def fetch_escrow_events(
        self,
        from_block: int | None = None,
        to_block: int | None = None,
        *,
        chunk_size: int = DEFAULT_LOG_CHUNK,
    ) -> list[EscrowEvent]:
        start = self.manifest.deployment_block if from_block is None else from_block
        events = await self.escrow.fetch_events(start, to_block, chunk_size=chunk_size)
        return [e for e in events if isinstance(e, EscrowEvent)]

    async def close(self) -> None:
        if self._owns_w3:
            provider = self.w3.provider
            disconnect = getattr(provider, "disconnect", None)
            if disconnect is not None:
                await disconnect()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
