"""Payment headers on the operator's OpenAI endpoints (docs/protocols/payments.md), and
the body of ``POST /v1/payments/settlements`` (docs/protocols/spendauth.md).

Each header value is base64url (padding optional) of a compact JSON object. Amounts
and nonces are decimal strings (JSON numbers lose precision past 2**53); signatures
are 0x-prefixed 65-byte hex.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

from mercato.payments.errors import PaymentRejected, Reason
from mercato.protocol.eip712 import SpendAuthorization, SpendSettlement

SPEND_AUTH_HEADER = "X-Mercato-Spend-Authorization"
VOUCHER_HEADER = "X-Mercato-Channel-Voucher"
PAYMENT_RESPONSE_HEADER = "X-Mercato-Payment"


def b64_json(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


def _decode(value: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        doc = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise PaymentRejected(Reason.MALFORMED, f"{what}: not base64url JSON") from exc
    if not isinstance(doc, dict):
        raise PaymentRejected(Reason.MALFORMED, f"{what}: must be a JSON object")
    return doc


def _int(doc: dict[str, Any], key: str, what: str, bits: int = 256) -> int:
    value = doc.get(key)
    try:
        number = int(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else -1
    except ValueError:
        number = -1
    if not 0 <= number < 2**bits:
        raise PaymentRejected(Reason.MALFORMED, f"{what}: {key} must be an unsigned integer")
    return number


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _address(doc: dict[str, Any], key: str, what: str) -> str:
    """A 0x address in lower case (mixed-case checksums are not enforced: the signature
    binds the address bytes, and checksumming costs a keccak per field)."""
    value = doc.get(key)
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise PaymentRejected(Reason.MALFORMED, f"{what}: {key} must be an address")
    return value.lower()


def _hex(doc: dict[str, Any], key: str, what: str, size: int) -> bytes:
    value = doc.get(key)
    try:
        raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise PaymentRejected(Reason.MALFORMED, f"{what}: {key} must be {size} bytes of hex")
    return raw


@dataclass(frozen=True, slots=True)
class SignedSpendAuthorization:
    auth: SpendAuthorization
    chain_id: int
    escrow: str
    signature: bytes

    @classmethod
    def decode(cls, value: str) -> SignedSpendAuthorization:
        what = SPEND_AUTH_HEADER
        doc = _decode(value, what)
        auth = SpendAuthorization(
            payer=_address(doc, "payer", what),
            operator=_address(doc, "operator", what),
            # the widths claim_batch packs (mercato.chain.batch): refuse at request time
            # what could not be settled later
            max_amount=_int(doc, "maxAmount", what, 96),
            nonce=_int(doc, "nonce", what),
            deadline=_int(doc, "deadline", what, 56),
        )
        return cls(
            auth,
            _int(doc, "chainId", what, 64),
            _address(doc, "escrow", what),
            _hex(doc, "signature", what, 65),
        )

    def encode(self) -> str:
        a = self.auth
        return b64_json(
            {
                "payer": a.payer,
                "operator": a.operator,
                "maxAmount": str(a.max_amount),
                "nonce": str(a.nonce),
                "deadline": str(a.deadline),
                "chainId": self.chain_id,
                "escrow": self.escrow,
                "signature": "0x" + self.signature.hex(),
            }
        )


@dataclass(frozen=True, slots=True)
class SignedVoucher:
    channel_id: bytes
    cumulative_amount: int
    chain_id: int
    escrow: str
    signature: bytes

    @classmethod
    def decode(cls, value: str) -> SignedVoucher:
        what = VOUCHER_HEADER
        doc = _decode(value, what)
        return cls(
            _hex(doc, "channelId", what, 32),
            _int(doc, "cumulativeAmount", what, 128),
            _int(doc, "chainId", what, 64),
            _address(doc, "escrow", what),
            _hex(doc, "signature", what, 65),
        )

    def encode(self) -> str:
        return b64_json(
            {
                "channelId": "0x" + self.channel_id.hex(),
                "cumulativeAmount": str(self.cumulative_amount),
                "chainId": self.chain_id,
                "escrow": self.escrow,
                "signature": "0x" + self.signature.hex(),
            }
        )


SETTLEMENT_BODY = "spend settlement"


@dataclass(frozen=True, slots=True)
class SignedSpendSettlement:
    """A payer's signed ``SpendSettlement`` as the operator's settlements endpoint takes
    it: a JSON object with the same fields as the header forms (decimal strings)."""

    settlement: SpendSettlement
    chain_id: int
    escrow: str
    signature: bytes

    @classmethod
    def from_json(cls, raw: bytes) -> SignedSpendSettlement:
        what = SETTLEMENT_BODY
        try:
            doc = orjson.loads(raw)
        except ValueError as exc:
            raise PaymentRejected(Reason.MALFORMED, f"{what}: not JSON") from exc
        if not isinstance(doc, dict):
            raise PaymentRejected(Reason.MALFORMED, f"{what}: must be a JSON object")
        settlement = SpendSettlement(
            payer=_address(doc, "payer", what),
            operator=_address(doc, "operator", what),
            # the widths claim_settlements packs (mercato.chain.batch.check_settlement)
            word=_int(doc, "word", what, 200),
            mask=_int(doc, "mask", what),
            total=_int(doc, "total", what, 96),
            deadline=_int(doc, "deadline", what, 56),
        )
        return cls(
            settlement,
            _int(doc, "chainId", what, 64),
            _address(doc, "escrow", what),
            _hex(doc, "signature", what, 65),
        )

    def to_doc(self) -> dict[str, Any]:
        s = self.settlement
        return {
            "payer": s.payer,
            "operator": s.operator,
            "word": str(s.word),
            "mask": str(s.mask),
            "total": str(s.total),
            "deadline": str(s.deadline),
            "chainId": self.chain_id,
            "escrow": self.escrow,
            "signature": "0x" + self.signature.hex(),
        }
