"""``mercato.Client`` and ``mercato.AsyncClient``: the official ``openai`` clients, paying
Mercato operators from a local wallet and verifying every answer's signed receipt.

    from mercato.client.sdk import Client

    client = Client("http://127.0.0.1:8090", api_key="sk-...")              # router credits
    client = Client("http://127.0.0.1:8101", payment="spendauth", wallet="demo")
    reply = client.chat.completions.create(model="smollm2-135m-instruct", messages=[...])
    answer = client.answer_for(reply)        # receipt, verified, operator, cost, payment

Payment methods: ``api_key`` (router credits), ``spendauth`` (a signed spend
authorization per request, from the escrow deposit), ``channel`` (a payment channel the
client opens and tops up itself) and ``x402`` (the official x402 SDK, ``exact`` scheme,
from the wallet's token balance). Paid requests are never retried by ``openai``
(``max_retries=0``) so that nothing is paid twice. With ``strict=True`` (default) an
answer whose receipt is missing or does not verify raises :class:`ReceiptError` (for
streams: when the stream ends); ``strict=False`` records it as unverified instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
from eth_account.signers.local import LocalAccount

from mercato.chain.anvil import DEVNET_CHAIN_ID
from mercato.chain.client import ChainClient
from mercato.chain.manifest import Manifest, mercato_home
from mercato.client.attest import AttestationFailed, Attested, attest_operator
from mercato.client.paying import (
    ApiKeyPayment,
    ChannelPayment,
    ChannelStore,
    PaymentStrategy,
    SpendAuthPayment,
    X402Payment,
)
from mercato.client.transport import (
    Ledger,
    LoopThread,
    PaidAnswer,
    PayingAsyncTransport,
    PayingTransport,
    ReceiptError,
)
from mercato.client.wallet import load_wallet

__all__ = [
    "AsyncClient",
    "AttestationFailed",
    "Client",
    "PaidAnswer",
    "PaymentMethod",
    "ReceiptError",
]

PaymentMethod = Literal["api_key", "spendauth", "channel", "x402"]
API_KEY_ENV = "MERCATO_API_KEY"
UNUSED_KEY = "mercato-wallet"  # openai needs some api_key; operators ignore it


def _v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _account(wallet: str | Path | LocalAccount | None, password: str | None) -> LocalAccount:
    if wallet is None:
        wallet = os.environ.get("MERCATO_WALLET", "default")
    if isinstance(wallet, LocalAccount):
        return wallet
    return load_wallet(wallet, password)


def _manifest(manifest: Path | Manifest | None, rpc_url: str | None) -> Manifest:
    loaded = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    return loaded.with_rpc_url(rpc_url) if rpc_url else loaded


class _Setup:
    """What both clients build from the same arguments."""

    def __init__(
        self,
        payment: PaymentMethod,
        api_key: str | None,
        wallet: str | Path | LocalAccount | None,
        password: str | None,
        manifest: Path | Manifest | None,
        rpc_url: str | None,
        channel_deposit: int,
        chain_id: int | None,
        home: Path | None,
    ) -> None:
        self.chain: ChainClient | None = None
        self.account: LocalAccount | None = None
        self.payer: PaymentStrategy
        self.api_key = api_key or os.environ.get(API_KEY_ENV)
        if payment == "api_key":
            if not self.api_key:
                raise ValueError(f"payment='api_key' needs api_key= (or {API_KEY_ENV})")
            self.payer = ApiKeyPayment()
            return
        self.account = _account(wallet, password)
        self.api_key = self.api_key or UNUSED_KEY
        if payment == "spendauth":
            self.payer = SpendAuthPayment(self.account)
        elif payment == "channel":
            self.chain = ChainClient(_manifest(manifest, rpc_url), account=self.account)
            store = ChannelStore((home or mercato_home()) / "channels", self.account.address)
            self.payer = ChannelPayment(self.chain, deposit=channel_deposit, store=store)
        elif payment == "x402":
            if chain_id is None:
                try:
                    chain_id = _manifest(manifest, rpc_url).chain_id
                except Exception:
                    chain_id = DEVNET_CHAIN_ID
            self.payer = X402Payment(self.account, chain_id)
        else:
            raise ValueError(f"unknown payment method {payment!r}")


class _Answers:
    _ledger: Ledger
    base_url: Any

    def _attest_args(self, answer: PaidAnswer | None, operator_url: str | None) -> tuple[str, str]:
        answer = answer or self._ledger.last
        if answer is None or answer.receipt is None:
            raise ValueError("no answer with a receipt to attest")
        url = operator_url or str(self.base_url)
        return url, answer.receipt.signing_address

    @property
    def last_answer(self) -> PaidAnswer | None:
        """The latest answer's receipt, verification, operator and cost."""
        return self._ledger.last

    @property
    def last_receipt(self) -> Any:
        last = self._ledger.last
        return last.receipt if last else None

    def answer_for(self, response: Any) -> PaidAnswer | None:
        """The :class:`PaidAnswer` of a completion (or of a stream's chunk) by its id."""
        rid = response if isinstance(response, str) else getattr(response, "id", None)
        return self._ledger.get(rid) if rid else None


# openai 3 takes legacy httpx clients as well as httpx2 ones (openai/_httpx2.py).
class AsyncClient(openai.AsyncOpenAI, _Answers):
    def __init__(
        self,
        base_url: str,
        *,
        payment: PaymentMethod = "api_key",
        api_key: str | None = None,
        wallet: str | Path | LocalAccount | None = None,
        password: str | None = None,
        manifest: Path | Manifest | None = None,
        rpc_url: str | None = None,
        channel_deposit: int = 1_000_000,
        chain_id: int | None = None,
        expected_signers: list[str] | None = None,
        strict: bool = True,
        home: Path | None = None,
        timeout: float = 120.0,
        max_retries: int | None = None,
        **kwargs: Any,
    ) -> None:
        setup = _Setup(payment, api_key, wallet, password, manifest, rpc_url,
                       channel_deposit, chain_id, home)  # fmt: skip
        self._ledger = Ledger()
        self.payer = setup.payer
        self.account = setup.account
        self._chain = setup.chain
        signers = frozenset(s.lower() for s in expected_signers) if expected_signers else None
        transport = PayingAsyncTransport(
            setup.payer, self._ledger, strict=strict, expected_signers=signers
        )
        retries = max_retries if max_retries is not None else (2 if payment == "api_key" else 0)
        super().__init__(
            base_url=_v1(base_url),
            api_key=setup.api_key,
            max_retries=retries,
            http_client=httpx.AsyncClient(transport=transport, timeout=timeout),  # type: ignore[arg-type]
            **kwargs,
        )

    async def create_with_receipt(self, **kwargs: Any) -> tuple[Any, PaidAnswer | None]:
        """``chat.completions.create(**kwargs)`` (not streamed) and its answer."""
        response = await self.chat.completions.create(**kwargs)
        return response, self.answer_for(response) or self.last_answer

    async def attest(
        self, answer: PaidAnswer | None = None, *, operator_url: str | None = None
    ) -> Attested:
        """A fresh attestation of the operator that signed ``answer`` (default: the last
        one): ``"bound"``, ``"none"`` (no TEE), or :class:`AttestationFailed`. Through a
        router, give the operator's own ``operator_url``."""
        return await attest_operator(*self._attest_args(answer, operator_url))

    async def close(self) -> None:
        await super().close()
        await self.payer.aclose()
        if self._chain is not None:
            await self._chain.close()


class Client(openai.OpenAI, _Answers):
    def __init__(
        self,
        base_url: str,
        *,
        payment: PaymentMethod = "api_key",
        api_key: str | None = None,
        wallet: str | Path | LocalAccount | None = None,
        password: str | None = None,
        manifest: Path | Manifest | None = None,
        rpc_url: str | None = None,
        channel_deposit: int = 1_000_000,
        chain_id: int | None = None,
        expected_signers: list[str] | None = None,
        strict: bool = True,
        home: Path | None = None,
        timeout: float = 120.0,
        max_retries: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._runner = LoopThread()
        try:
            setup = _Setup(payment, api_key, wallet, password, manifest, rpc_url,
                           channel_deposit, chain_id, home)  # fmt: skip
        except BaseException:
            self._runner.close()
            raise
        self._ledger = Ledger()
        self.payer = setup.payer
        self.account = setup.account
        self._chain = setup.chain
        signers = frozenset(s.lower() for s in expected_signers) if expected_signers else None
        transport = PayingTransport(
            setup.payer, self._ledger, self._runner, strict=strict, expected_signers=signers
        )
        retries = max_retries if max_retries is not None else (2 if payment == "api_key" else 0)
        super().__init__(
            base_url=_v1(base_url),
            api_key=setup.api_key,
            max_retries=retries,
            http_client=httpx.Client(transport=transport, timeout=timeout),  # type: ignore[arg-type]
            **kwargs,
        )

    def create_with_receipt(self, **kwargs: Any) -> tuple[Any, PaidAnswer | None]:
        """``chat.completions.create(**kwargs)`` (not streamed) and its answer."""
        response = self.chat.completions.create(**kwargs)
        return response, self.answer_for(response) or self.last_answer

    def attest(
        self, answer: PaidAnswer | None = None, *, operator_url: str | None = None
    ) -> Attested:
        """See :meth:`AsyncClient.attest`."""
        return self._runner.run(attest_operator(*self._attest_args(answer, operator_url)))

    def close(self) -> None:
        super().close()
        self._runner.run(self.payer.aclose())
        if self._chain is not None:
            self._runner.run(self._chain.close())
        self._runner.close()
