"""How the SDK pays an operator: one strategy per method.

Every strategy learns an operator's terms (address, escrow, chain, prices) from its
HTTP 402 challenge (``PAYMENT-REQUIRED``, the ``mercato-spendauth`` entry), then pays
each later request up front, sized by an upper bound of the request's cost; a second
402 is answered once more with the challenge's own amount.

- :class:`ApiKeyPayment`: nothing to sign (the router bills the API key's credits).
- :class:`SpendAuthPayment`: a fresh EIP-712 spend authorization per request; once
  answers are back, one spend settlement per operator and nonce word (every
  ``settle_every`` answers, when the nonce word moves on, and on close), posted to
  the operator in the background so that it settles them all with one signature.
- :class:`ChannelPayment`: opens a channel on first use, tops it up when low, sends
  increasing vouchers sized by the request's bound plus the receipt's
  ``channel_consumed``.
- :class:`X402Payment`: the official x402 SDK pays the ``exact`` scheme.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson
from eth_account.signers.local import LocalAccount

from mercato.client.payments import (
    EscrowRef,
    NonceAllocator,
    sign_spend_authorization,
    sign_voucher,
)
from mercato.client.settling import SETTLEMENTS_PATH as SETTLEMENTS_PATH
from mercato.client.settling import Payee, SpendSettler, charged_of
from mercato.payments.wire import SPEND_AUTH_HEADER, VOUCHER_HEADER
from mercato.protocol.receipts import Receipt

if TYPE_CHECKING:
    from mercato.chain.client import ChainClient

PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
SPENDAUTH_SCHEME = "mercato-spendauth"
PER_TOKENS = 1_000_000


class PaymentError(Exception):
    """The SDK could not pay (no challenge to learn from, chain unavailable, no funds)."""


@dataclass(frozen=True, slots=True)
class Terms:
    """An operator's terms, from the ``mercato-spendauth`` entry of its 402 challenge."""

    operator: str
    chain_id: int
    escrow: str
    token: str
    amount: int  # the challenged request's ceiling
    price_in_per_m: int
    price_out_per_m: int
    max_completion_tokens: int
    reason: str = ""

    @property
    def ref(self) -> EscrowRef:
        return EscrowRef(self.chain_id, self.escrow)


def decode_challenge(value: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def parse_terms(value: str | None) -> Terms | None:
    """The terms in a ``PAYMENT-REQUIRED`` header value, or None if it has none."""
    doc = decode_challenge(value) if value else None
    if doc is None:
        return None
    for entry in doc.get("accepts") or []:
        if not isinstance(entry, dict) or entry.get("scheme") != SPENDAUTH_SCHEME:
            continue
        try:
            extra = entry["extra"]
            pricing = extra["pricing"]
            return Terms(
                operator=str(entry["payTo"]),
                chain_id=int(extra["chainId"]),
                escrow=str(extra["escrow"]),
                token=str(entry.get("asset", "")),
                amount=int(entry["amount"]),
                price_in_per_m=int(pricing["inputPerMillion"]),
                price_out_per_m=int(pricing["outputPerMillion"]),
                max_completion_tokens=int(pricing["maxCompletionTokens"]),
                reason=str(doc.get("error") or ""),
            )
        except (KeyError, TypeError, ValueError):
            return None
    return None


def cost_bound(terms: Terms, body: bytes) -> int:
    """An upper bound of what ``body`` can cost at ``terms``' prices: prompt tokens are
    bounded generously by the body's size (plus room for the chat template), output by
    ``max_tokens`` (or the operator's default ceiling)."""
    max_tokens = terms.max_completion_tokens
    try:
        doc = orjson.loads(body)
        asked = doc.get("max_completion_tokens") or doc.get("max_tokens")
        if isinstance(asked, int) and asked > 0:
            max_tokens = asked
    except (orjson.JSONDecodeError, AttributeError):
        pass
    prompt = 2 * len(body) + 512
    total = prompt * terms.price_in_per_m + max_tokens * terms.price_out_per_m
    return max(-(-total // PER_TOKENS), 1)


class PaymentStrategy(Protocol):
    method: str

    async def prepay(self, target: str, body: bytes) -> dict[str, str]:
        """Headers paying for ``body`` at ``target`` before any challenge ({} if unknown)."""
        ...

    async def on_challenge(
        self, target: str, body: bytes, response: httpx.Response
    ) -> dict[str, str] | None:
        """Headers answering a 402 (None: give up and return the 402)."""
        ...

    async def on_receipt(
        self, target: str, receipt: Receipt | None, ok: bool, sent: dict[str, str]
    ) -> None:
        """An attempt's outcome (``receipt`` None when it was not served), with the
        payment headers it was ``sent`` with."""
        ...

    async def aclose(self) -> None: ...


class ApiKeyPayment:
    """Credits of an API key at the router: the key travels as the bearer token."""

    method = "api_key"

    async def prepay(self, target: str, body: bytes) -> dict[str, str]:
        return {}

    async def on_challenge(
        self, target: str, body: bytes, response: httpx.Response
    ) -> dict[str, str] | None:
        return None

    async def on_receipt(
        self, target: str, receipt: Receipt | None, ok: bool, sent: dict[str, str]
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None


class SpendAuthPayment:
    """A fresh spend authorization per request, capped at the request's cost bound; the
    charges the answers report are settled afterwards by spend settlements (one payer
    signature per operator and nonce word: docs/protocols/spendauth.md, posted by a
    :class:`mercato.client.settling.SpendSettler`), which the operator uses instead of
    settling each authorization (``settle=False``: never)."""

    method = "spendauth"

    def __init__(
        self,
        account: LocalAccount,
        *,
        ttl_s: int = 3600,
        settle: bool = True,
        settle_every: int = 64,
        # well within the operators' default settlement_wait_s (300 s), so that a client
        # with few requests gets them settled together too
        settle_after_s: float | None = 120.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.account = account
        self.ttl_s = ttl_s
        self.nonces = NonceAllocator()
        self.terms: dict[str, Terms] = {}
        self.settle = settle
        self.settler = SpendSettler(
            account, every=settle_every, ttl_s=ttl_s, max_age_s=settle_after_s, http=http
        )
        # header value -> (terms, nonce, amount authorized)
        self._sent: dict[str, tuple[Terms, int, int]] = {}

    @property
    def settle_every(self) -> int:
        return self.settler.every

    @property
    def settlements(self) -> list[dict[str, Any]]:
        """The operators' answers to the settlements posted, for callers."""
        return list(self.settler.answers)

    def _header(self, terms: Terms, amount: int) -> dict[str, str]:
        nonce = self.nonces.next()
        signed = sign_spend_authorization(
            self.account, terms.ref, terms.operator, amount, nonce, ttl_s=self.ttl_s
        )
        value = signed.encode()
        if self.settle:
            self._sent[value] = (terms, nonce, amount)
            self.settler.allocated(nonce)
        return {SPEND_AUTH_HEADER: value}

    async def prepay(self, target: str, body: bytes) -> dict[str, str]:
        terms = self.terms.get(target)
        return self._header(terms, cost_bound(terms, body)) if terms else {}

    async def on_challenge(
        self, target: str, body: bytes, response: httpx.Response
    ) -> dict[str, str] | None:
        terms = parse_terms(response.headers.get(PAYMENT_REQUIRED))
        if terms is None:
            return None
        self.terms[target] = terms
        return self._header(terms, max(terms.amount, cost_bound(terms, body)))

    async def on_receipt(
        self, target: str, receipt: Receipt | None, ok: bool, sent: dict[str, str]
    ) -> None:
        found = self._sent.pop(sent.get(SPEND_AUTH_HEADER, ""), None)
        charged = charged_of(receipt)
        if found is None or charged is None or not ok:
            return  # not served (or not ours): the operator charges it nothing or alone
        terms, nonce, amount = found
        self.settler.answered(Payee(target, terms.operator, terms.ref), nonce, charged, amount)

    async def flush(self) -> None:
        """Settle every answered nonce now and wait for the operators' answers."""
        await self.settler.flush()

    async def aclose(self) -> None:
        await self.flush()


@dataclass
class ChannelState:
    channel_id: bytes
    deposit: int
    consumed: int = 0  # the operator's metered total, from the last receipt
    best: int = 0  # the highest voucher sent
    inflight: int = 0  # bounds of requests sent and not yet answered
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ChannelStore:
    """Channel ids kept in ``<home>/channels/<payer>.json``, keyed by
    ``<chain id>:<escrow>:<operator>`` (lower case), so that the CLI and later runs
    of the SDK reuse an open channel."""

    def __init__(self, directory: Path, payer: str) -> None:
        self.path = directory / f"{payer.lower()}.json"

    @staticmethod
    def key(chain_id: int, escrow: str, operator: str) -> str:
        return f"{chain_id}:{escrow.lower()}:{operator.lower()}"

    def load(self) -> dict[str, str]:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    def get(self, key: str) -> bytes | None:
        value = self.load().get(key)
        return bytes.fromhex(value.removeprefix("0x")) if value else None

    def put(self, key: str, channel_id: bytes | None) -> None:
        doc = self.load()
        if channel_id is None:
            doc.pop(key, None)
        else:
            doc[key] = "0x" + channel_id.hex()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.path)


class ChannelPayment:
    """A payment channel per operator, opened, topped up and spent by vouchers."""

    method = "channel"

    def __init__(
        self,
        chain: ChainClient,
        *,
        deposit: int = 1_000_000,
        top_up: int | None = None,
        store: ChannelStore | None = None,
    ) -> None:
        if chain.sender is None:
            raise PaymentError("channel payments need a chain client with the payer's account")
        self.chain = chain
        self.account: LocalAccount = chain.sender.account
        self.deposit = deposit
        self.top_up = top_up or deposit
        self.store = store
        self.terms: dict[str, Terms] = {}
        self.channels: dict[str, ChannelState] = {}
        self._open_lock = asyncio.Lock()
        self._pending: dict[str, int] = {}  # voucher sent -> the bound it added in flight

    async def _ensure_allowance(self, amount: int) -> None:
        escrow = self.chain.escrow.address
        if await self.chain.token.allowance(self.account.address, escrow) < amount:
            await self.chain.token.approve(escrow, 2**255)

    async def _channel(self, target: str, terms: Terms, need: int) -> ChannelState:
        async with self._open_lock:
            state = self.channels.get(target)
            if state is not None:
                return state
            key = ChannelStore.key(terms.chain_id, terms.escrow, terms.operator)
            known = self.store.get(key) if self.store else None
            if known is not None:
                ch = await self.chain.escrow.channels(known)
                if int(ch.status) == 1 and ch.operator.lower() == terms.operator.lower():
                    # Unknown history: the operator's metered total is at least what it claimed.
                    state = ChannelState(known, ch.deposit, consumed=ch.claimed)
                    self.channels[target] = state
                    return state
            amount = max(self.deposit, 2 * need)
            await self._ensure_allowance(amount)
            channel_id, _ = await self.chain.escrow.open_channel(
                terms.operator, amount, os.urandom(32)
            )
            if self.store is not None:
                self.store.put(key, channel_id)
            state = ChannelState(channel_id, amount)
            self.channels[target] = state
            return state

    async def _voucher(
        self, target: str, terms: Terms, amount: int, *, stale: bool = False
    ) -> dict[str, str]:
        state = await self._channel(target, terms, amount)
        async with state.lock:
            cumulative = max(state.consumed + state.inflight + amount, state.best + 1)
            if stale:  # the operator saw a higher voucher than we know of
                cumulative = max(cumulative, state.deposit)
            if cumulative > state.deposit:
                extra = max(self.top_up, cumulative - state.deposit)
                await self._ensure_allowance(extra)
                await self.chain.escrow.top_up(state.channel_id, extra)
                state.deposit += extra
                if stale:
                    cumulative = state.deposit
            state.best = cumulative
            state.inflight += amount
            value = sign_voucher(self.account, terms.ref, state.channel_id, cumulative).encode()
            self._pending[value] = amount
        return {VOUCHER_HEADER: value}

    async def prepay(self, target: str, body: bytes) -> dict[str, str]:
        terms = self.terms.get(target)
        if terms is None or target not in self.channels:
            return {}
        return await self._voucher(target, terms, cost_bound(terms, body))

    async def on_challenge(
        self, target: str, body: bytes, response: httpx.Response
    ) -> dict[str, str] | None:
        terms = parse_terms(response.headers.get(PAYMENT_REQUIRED))
        if terms is None:
            return None
        self.terms[target] = terms
        stale = terms.reason == "voucher_not_increasing"
        return await self._voucher(target, terms, max(terms.amount, cost_bound(terms, body)),
                                   stale=stale)  # fmt: skip

    async def on_receipt(
        self, target: str, receipt: Receipt | None, ok: bool, sent: dict[str, str]
    ) -> None:
        state = self.channels.get(target)
        if state is None:
            return
        amount = self._pending.pop(sent.get(VOUCHER_HEADER, ""), 0)
        state.inflight = max(0, state.inflight - amount)  # this request no longer holds it
        payment = receipt.payment if receipt is not None else None
        if payment and payment.get("channel_consumed") is not None:
            state.consumed = max(state.consumed, int(payment["channel_consumed"]))

    async def aclose(self) -> None:
        return None


class X402Payment:
    """HTTP 402 payments by the official x402 SDK (scheme ``exact``, EIP-3009 transfer
    of the token from the payer's wallet)."""

    method = "x402"

    def __init__(self, account: LocalAccount, chain_id: int) -> None:
        from x402 import x402Client
        from x402.http.x402_http_client import x402HTTPClient
        from x402.mechanisms.evm.exact import ExactEvmScheme

        self.client = x402Client()
        self.client.register(f"eip155:{chain_id}", ExactEvmScheme(signer=account))  # type: ignore[arg-type]
        self.client.set_spend_controls(False)  # Mercato's devnet token is a custom asset
        self.http = x402HTTPClient(self.client)

    async def prepay(self, target: str, body: bytes) -> dict[str, str]:
        return {}

    async def on_challenge(
        self, target: str, body: bytes, response: httpx.Response
    ) -> dict[str, str] | None:
        try:
            required = self.http.get_payment_required_response(
                response.headers.get, response.content
            )
            payload = await self.client.create_payment_payload(required)
        except Exception as exc:  # the SDK raises its own exception types
            raise PaymentError(f"x402: cannot pay this challenge: {exc}") from exc
        return dict(self.http.encode_payment_signature_header(payload))

    async def on_receipt(
        self, target: str, receipt: Receipt | None, ok: bool, sent: dict[str, str]
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None
