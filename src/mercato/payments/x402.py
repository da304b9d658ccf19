"""x402 v2 at the operator: the 402 challenge and the two schemes it offers.

- ``exact``: an EIP-3009 ``transferWithAuthorization`` of the token, priced at the
  request's ceiling (prompt + ``max_tokens``). Verified off-chain (signature, payee,
  amount, validity window, nonce never seen, payer's token balance from the cached
  view); the signed transfer is submitted later by the settlement worker, before
  ``validBefore``. ``PAYMENT-RESPONSE`` says ``"settlement": "pending"``.
- ``mercato-spendauth``: Mercato's usage-based scheme, the EIP-712 SpendAuthorization
  of docs/protocols/spendauth.md carried in an x402 payload; the payer pays the metered
  cost, at most the authorized maximum.

Headers are base64 of camelCase JSON as the official ``x402`` SDK reads and writes
them; its client pays ``exact`` with nothing but ``register("eip155:<chain>", ...)``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from eth_utils.address import is_address, to_checksum_address

from mercato.chain.token import PaymentToken
from mercato.crypto.signers import recover_digest
from mercato.payments.errors import PaymentRejected, Reason
from mercato.payments.pricing import Estimate, Price
from mercato.payments.rules import PaymentContext
from mercato.payments.service import Payment, PaymentService
from mercato.payments.wire import SignedSpendAuthorization
from mercato.protocol.eip712 import SpendAuthorization, transfer_with_authorization_digest
from mercato.storage.payment_models import (
    CLAIMABLE,
    REJECTED,
    RESERVED,
    SETTLED,
    SUBMITTED,
    VOID,
    X402PaymentRow,
)

log = logging.getLogger(__name__)

PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
SPENDAUTH_SCHEME = "mercato-spendauth"


def b64(doc: dict[str, Any]) -> str:
    return base64.b64encode(orjson.dumps(doc)).decode()


def unb64(value: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise PaymentRejected(Reason.MALFORMED, f"{PAYMENT_SIGNATURE}: not base64 JSON") from exc
    if not isinstance(doc, dict):
        raise PaymentRejected(Reason.MALFORMED, f"{PAYMENT_SIGNATURE}: not a JSON object")
    return doc


@dataclass(frozen=True, slots=True)
class X402Config:
    token: str
    token_name: str
    token_version: str
    token_separator: bytes  # the token's EIP-712 domain separator
    max_timeout_s: int = 3600  # how long a client's EIP-3009 authorization stays valid


class X402:
    def __init__(
        self, service: PaymentService, ctx: PaymentContext, config: X402Config, token: PaymentToken
    ) -> None:
        self._service = service
        self._ctx = ctx
        self._cfg = config
        self._token = token
        self.network = f"eip155:{ctx.chain_id}"
        self._owed: dict[str, int] = {}  # payer -> accepted, not yet transferred

    async def start(self) -> None:
        """Rebuild what each payer has pending from the database (after a restart)."""
        for row in await self._service.run_db(self._service.store.pending_x402):
            self._owed[row.payer] = self._owed.get(row.payer, 0) + row.value

    # -- the challenge ------------------------------------------------------------------

    def accepts(self, est: Estimate, price: Price) -> list[dict[str, Any]]:
        common = {"network": self.network, "asset": self._cfg.token, "payTo": self._ctx.operator}
        return [
            {
                "scheme": "exact",
                **common,
                "amount": str(est.amount),
                "maxTimeoutSeconds": self._cfg.max_timeout_s,
                "extra": {"name": self._cfg.token_name, "version": self._cfg.token_version},
            },
            {
                "scheme": SPENDAUTH_SCHEME,
                **common,
                "amount": str(est.amount),
                "maxTimeoutSeconds": self._cfg.max_timeout_s,
                "extra": {
                    "escrow": self._ctx.escrow,
                    "name": "Mercato PaymentEscrow",
                    "version": "1",
                    "chainId": self._ctx.chain_id,
                    "minDeadlineSeconds": self._ctx.settle_margin_s,
                    "pricing": {
                        "inputPerMillion": str(price.input_per_m),
                        "outputPerMillion": str(price.output_per_m),
                        "promptTokens": est.prompt_tokens,
                        "maxCompletionTokens": est.max_completion_tokens,
                    },
                },
            },
        ]

    def headers(self, est: Estimate, resource: str, reason: Reason, price: Price) -> dict[str, str]:
        doc = {
            "x402Version": 2,
            "error": reason.value,
            "resource": {
                "url": resource,
                "description": "LLM inference",
                "mimeType": "application/json",
            },
            "accepts": self.accepts(est, price),
        }
        return {PAYMENT_REQUIRED: b64(doc)}

    # -- paying -------------------------------------------------------------------------

    async def authorize(
        self, headers: Mapping[str, str], price: Price, est: Estimate, resource: str
    ) -> Payment | None:
        value = headers.get(PAYMENT_SIGNATURE.lower())
        if not value:
            return None
        doc = unb64(value)
        accepted = doc.get("accepted") if isinstance(doc.get("accepted"), dict) else {}
        inner = doc.get("payload") if isinstance(doc.get("payload"), dict) else {}
        assert isinstance(accepted, dict) and isinstance(inner, dict)
        if doc.get("x402Version") != 2 or accepted.get("network") != self.network:
            raise self._reject(
                Reason.UNSUPPORTED, "x402: version 2 on " + self.network, est, resource, price
            )
        if accepted.get("scheme") == "exact":
            return await self._exact(inner, price, est, resource)
        if accepted.get("scheme") == SPENDAUTH_SCHEME:
            signed = _spendauth_from_payload(inner, self._ctx)
            payment = await self._service.spend_authorization(signed, price, est, resource)
            payment.extra["x402"] = _settle_response(
                self.network, payment.payer, None, SPENDAUTH_SCHEME
            )
            return payment
        raise self._reject(Reason.UNSUPPORTED, "x402: unsupported scheme", est, resource, price)

    def _reject(
        self, reason: Reason, msg: str, est: Estimate, resource: str, price: Price
    ) -> PaymentRejected:
        return PaymentRejected(reason, msg, headers=self.headers(est, resource, reason, price))

    async def _exact(
        self, inner: dict[str, Any], price: Price, est: Estimate, resource: str
    ) -> Payment:
        auth = inner.get("authorization")
        try:
            assert isinstance(auth, dict)
            payer = to_checksum_address(str(auth["from"]))
            pay_to = to_checksum_address(str(auth["to"]))
            value = int(auth["value"])
            valid_after, valid_before = int(auth["validAfter"]), int(auth["validBefore"])
            nonce = bytes.fromhex(str(auth["nonce"]).removeprefix("0x"))
            signature = bytes.fromhex(str(inner["signature"]).removeprefix("0x"))
            assert len(nonce) == 32 and len(signature) == 65 and value >= 0
        except (AssertionError, KeyError, ValueError, TypeError) as exc:
            raise self._reject(
                Reason.MALFORMED, f"x402 exact: bad authorization ({exc})", est, resource, price
            ) from exc
        now = int(time.time())
        if pay_to.lower() != self._ctx.operator.lower():
            raise self._reject(
                Reason.WRONG_OPERATOR, "x402 exact: pays someone else", est, resource, price
            )
        if value < est.amount:
            raise self._reject(
                Reason.AMOUNT_TOO_LOW,
                f"x402 exact: {value} < price {est.amount}",
                est,
                resource,
                price,
            )
        if valid_after >= now or valid_before < now + self._ctx.settle_margin_s:
            raise self._reject(
                Reason.EXPIRED, "x402 exact: outside its validity window", est, resource, price
            )
        digest = transfer_with_authorization_digest(
            self._cfg.token_separator, payer, pay_to, value, valid_after, valid_before, nonce
        )
        try:
            signer = recover_digest(digest, signature)
        except ValueError:
            signer = ""
        if signer.lower() != payer.lower():
            raise self._reject(
                Reason.BAD_SIGNATURE, "x402 exact: bad signature", est, resource, price
            )
        key = payer.lower()
        try:
            balance = await self._token.balance_of(payer)
        except Exception as exc:
            raise self._reject(
                Reason.CHAIN_UNAVAILABLE, f"cannot read balance: {exc}", est, resource, price
            ) from exc
        if balance - self._owed.get(key, 0) < value:
            raise self._reject(
                Reason.INSUFFICIENT_ESCROW, "x402 exact: balance too low", est, resource, price
            )
        row = X402PaymentRow(
            payer=key, nonce="0x" + nonce.hex(), pay_to=pay_to, value=value,
            valid_after=valid_after, valid_before=valid_before,
            signature="0x" + signature.hex(), status=RESERVED, created_at=now, updated_at=now,
        )  # fmt: skip
        self._owed[key] = self._owed.get(key, 0) + value
        if not await self._service.run_db(self._service.store.reserve_x402, row):
            self._owed[key] -= value
            raise self._reject(
                Reason.AUTHORIZATION_REUSED,
                "x402: authorization already used",
                est,
                resource,
                price,
            )
        return Payment(
            "x402",
            key,
            value,
            price,
            f"x402:{key}:0x{nonce.hex()}",
            key=(key, "0x" + nonce.hex()),
            extra={"x402": _settle_response(self.network, payer, value, "exact")},
        )

    async def capture(self, payment: Payment, request_id: str) -> None:
        if payment.reference.startswith("x402:"):
            payer, nonce = payment.key
            await self._service.run_db(
                lambda: self._service.store.set_x402(payer, nonce, CLAIMABLE, request_id=request_id)
            )

    async def release(self, payment: Payment) -> None:
        payer, nonce = payment.key
        self._owed[payer] = self._owed.get(payer, 0) - payment.max_amount
        await self._service.run_db(lambda: self._service.store.set_x402(payer, nonce, VOID))

    # -- settling -----------------------------------------------------------------------

    async def submit_pending(self) -> bool:
        """Submit the signed transfers of served requests (called by the settlement worker)."""
        store = self._service.store
        rows: list[X402PaymentRow] = await self._service.run_db(store.pending_x402)
        for row in rows:
            nonce = bytes.fromhex(row.nonce[2:])
            payer = to_checksum_address(row.payer)
            if row.status == SUBMITTED and await self._token.authorization_state(payer, nonce):
                await self._service.run_db(lambda r=row: store.set_x402(r.payer, r.nonce, SETTLED))
                self._owed[row.payer] = self._owed.get(row.payer, 0) - row.value
                continue
            await self._service.run_db(lambda r=row: store.set_x402(r.payer, r.nonce, SUBMITTED))
            try:
                result = await self._token.transfer_with_authorization(
                    payer, row.pay_to, row.value, row.valid_after,
                    row.valid_before, nonce, bytes.fromhex(row.signature[2:]),
                )  # fmt: skip
            except Exception as exc:
                if await self._token.authorization_state(payer, nonce):
                    raise  # landed after all: the next round marks it settled
                log.error("x402 transfer %s refused: %s", row.nonce, exc)
                await self._service.run_db(
                    lambda r=row, e=exc: store.set_x402(
                        r.payer, r.nonce, REJECTED, reason=str(e)[:500]
                    )
                )
                self._owed[row.payer] = self._owed.get(row.payer, 0) - row.value
                continue
            await self._service.run_db(
                lambda r=row, t=result.tx_hash: store.set_x402(r.payer, r.nonce, SETTLED, tx_hash=t)
            )
            self._owed[row.payer] = self._owed.get(row.payer, 0) - row.value
        return bool(rows)


def _settle_response(network: str, payer: str, amount: int | None, scheme: str) -> str:
    doc: dict[str, Any] = {
        "success": True,
        "transaction": "",
        "network": network,
        "payer": payer,
        "extra": {"settlement": "pending", "scheme": scheme},
    }
    if amount is not None:
        doc["amount"] = str(amount)
    return b64(doc)


def _spendauth_from_payload(inner: dict[str, Any], ctx: PaymentContext) -> SignedSpendAuthorization:
    auth = inner.get("authorization")
    try:
        assert isinstance(auth, dict)
        fields = [auth["payer"], auth["operator"]]
        assert all(isinstance(f, str) and is_address(f) for f in fields)
        spend = SpendAuthorization(
            payer=to_checksum_address(auth["payer"]),
            operator=to_checksum_address(auth["operator"]),
            max_amount=int(auth["maxAmount"]),
            nonce=int(auth["nonce"]),
            deadline=int(auth["deadline"]),
        )
        signature = bytes.fromhex(str(inner["signature"]).removeprefix("0x"))
        assert len(signature) == 65
    except (AssertionError, KeyError, ValueError, TypeError) as exc:
        raise PaymentRejected(Reason.MALFORMED, f"{SPENDAUTH_SCHEME}: bad payload ({exc})") from exc
    return SignedSpendAuthorization(spend, ctx.chain_id, ctx.escrow, signature)
