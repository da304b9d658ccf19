"""Signed receipts: which operator produced which answer to which request.

Wire-compatible with Dstack's vllm-proxy: the signed text is
``"{sha256(request body bytes)}:{sha256(response bytes)}"`` (lower-case hex), signed
with EIP-191 personal_sign (secp256k1) and with Ed25519. Unlike vllm-proxy, both hashes
cover exactly the bytes on the wire; docs/protocols/receipts.md gives the byte ranges.

The receipt travels inline (``X-Mercato-Receipt`` header for JSON responses, an SSE
comment line after ``data: [DONE]`` for streams) and is served again by
``GET /v1/signature/{id}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mercato.crypto.signers import recover_personal, verify_ed25519

RECEIPT_HEADER = "X-Mercato-Receipt"
SSE_RECEIPT_PREFIX = b": mercato-receipt "
SSE_DONE = b"data: [DONE]\n\n"
SigningAlgo = Literal["ecdsa", "ed25519"]
SIGNING_ALGOS: tuple[SigningAlgo, ...] = ("ecdsa", "ed25519")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def receipt_text(request_sha256: str, response_sha256: str) -> str:
    return f"{request_sha256}:{response_sha256}"


def canonical_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def payment_text(request_sha256: str, response_sha256: str, payment: dict[str, Any]) -> str:
    """What the operator signs about the payment: bound to the request and response."""
    digest = sha256_hex(canonical_json(payment))
    return f"mercato-payment-v1:{request_sha256}:{response_sha256}:{digest}"


@dataclass(frozen=True, slots=True)
class Receipt:
    id: str
    request_sha256: str
    response_sha256: str
    signing_address: str
    ecdsa_signature: str
    ed25519_public_key: str
    ed25519_signature: str
    created_at: int
    payment: dict[str, Any] | None = None  # method, reference, payer, charged, tokens
    payment_signature: str | None = None  # EIP-191 over payment_text(...), same key

    @property
    def text(self) -> str:
        return receipt_text(self.request_sha256, self.response_sha256)

    def signature_body(self, algo: SigningAlgo) -> dict[str, Any]:
        """The body of ``GET /v1/signature/{id}?signing_algo=...`` (vllm-proxy's shape,
        plus the signed payment statement when the request was paid)."""
        if algo == "ecdsa":
            body: dict[str, Any] = {
                "text": self.text,
                "signature": self.ecdsa_signature,
                "signing_address": self.signing_address,
                "signing_algo": "ecdsa",
            }
        else:
            body = {
                "text": self.text,
                "signature": self.ed25519_signature,
                "signing_address": self.ed25519_public_key,
                "signing_algo": "ed25519",
            }
        if self.payment is not None:
            body["payment"] = self.payment
            body["payment_signature"] = self.payment_signature
        return body

    def to_json(self) -> str:
        """Compact JSON, ASCII only, one line: fits an HTTP header and an SSE comment."""
        doc = {"v": 1, **asdict(self), "text": self.text}
        if self.payment is None:
            del doc["payment"], doc["payment_signature"]
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Receipt:
        try:
            doc: dict[str, Any] = json.loads(raw)
            receipt = cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed receipt: {exc}") from exc
        if doc.get("text", receipt.text) != receipt.text:
            raise ValueError("malformed receipt: text does not match its hashes")
        return receipt


def split_sse_receipt(raw: bytes) -> tuple[bytes, Receipt | None]:
    """Split a complete SSE body into (the signed bytes, the inline receipt).

    The signed bytes end with ``data: [DONE]\\n\\n``; the receipt comment follows.
    """
    end = raw.rfind(SSE_DONE)
    if end < 0:
        return raw, None
    signed, rest = raw[: end + len(SSE_DONE)], raw[end + len(SSE_DONE) :]
    for line in rest.split(b"\n"):
        if line.startswith(SSE_RECEIPT_PREFIX):
            return signed, Receipt.from_json(line[len(SSE_RECEIPT_PREFIX) :])
    return signed, None


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    reason: str
    request_sha256: str
    response_sha256: str
    signer: str | None = None


def _ed25519_ok(receipt: Receipt, text: bytes) -> bool:
    try:
        return verify_ed25519(
            text,
            bytes.fromhex(receipt.ed25519_signature),
            bytes.fromhex(receipt.ed25519_public_key),
        )
    except ValueError:
        return False


def verify_receipt(
    receipt: Receipt,
    request: bytes,
    response: bytes,
    *,
    expected_address: str | None = None,
    expected_ed25519_key: str | None = None,
    check_ed25519: bool = True,
) -> Verification:
    """Recompute both hashes from the raw bytes and check both signatures.
    ``check_ed25519=False`` checks only the ECDSA one (the key registered on-chain), as
    the router does before passing the whole receipt on to its client."""
    req_hash, resp_hash = sha256_hex(request), sha256_hex(response)

    def fail(reason: str, signer: str | None = None) -> Verification:
        return Verification(False, reason, req_hash, resp_hash, signer)

    if req_hash != receipt.request_sha256:
        return fail("request_hash_mismatch")
    if resp_hash != receipt.response_sha256:
        return fail("response_hash_mismatch")
    text = receipt_text(req_hash, resp_hash).encode()
    try:
        signer = recover_personal(text, bytes.fromhex(receipt.ecdsa_signature.removeprefix("0x")))
    except ValueError:
        return fail("ecdsa_signature_malformed")
    if signer.lower() != receipt.signing_address.lower():
        return fail("ecdsa_signer_mismatch", signer)
    if expected_address is not None and signer.lower() != expected_address.lower():
        return fail("unexpected_signer", signer)
    if check_ed25519 and not _ed25519_ok(receipt, text):
        return fail("ed25519_signature_invalid", signer)
    if expected_ed25519_key is not None and (
        expected_ed25519_key.lower() != receipt.ed25519_public_key.lower()
    ):
        return fail("unexpected_ed25519_key", signer)
    if receipt.payment is not None:
        ptext = payment_text(req_hash, resp_hash, receipt.payment).encode()
        try:
            psig = bytes.fromhex((receipt.payment_signature or "").removeprefix("0x"))
            payment_signer = recover_personal(ptext, psig)
        except ValueError:
            return fail("payment_signature_invalid", signer)
        if payment_signer != signer:
            return fail("payment_signature_invalid", signer)
    return Verification(True, "ok", req_hash, resp_hash, signer)
