"""Verify an operator's answer from the raw bytes a client sent and received.

Used by ``mercato verify`` and by the SDK. The receipt comes inline (header or SSE
comment) or from the operator's ``/v1/signature/{id}``; an optional fresh attestation
checks that the same signing key is bound into a TEE quote with a random nonce.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import httpx

from mercato.attestation import (
    AttestationError,
    NoHardwareAttestation,
    verify_report_binding,
)
from mercato.protocol.receipts import Receipt, Verification, split_sse_receipt, verify_receipt


class VerifyError(Exception):
    """Verification could not be carried out (bad input, operator unreachable)."""


@dataclass
class VerifyOutcome:
    receipt: Receipt
    verification: Verification
    attestation: str | None = None  # "bound", "none" (no TEE) or None (not asked)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verification.ok


def response_id(response: bytes) -> str | None:
    """The ``id`` of a JSON response or of the first chunk of an SSE stream."""
    import orjson

    body = response
    if response.lstrip().startswith(b"data:"):
        first = response.lstrip().split(b"\n", 1)[0]
        body = first[5:].strip()
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return str(doc["id"]) if isinstance(doc, dict) and doc.get("id") else None


async def fetch_receipt(client: httpx.AsyncClient, operator: str, rid: str) -> Receipt:
    """Both signatures from ``GET /v1/signature/{id}``, assembled into a receipt."""
    docs = {}
    for algo in ("ecdsa", "ed25519"):
        resp = await client.get(f"{operator}/v1/signature/{rid}", params={"signing_algo": algo})
        if resp.status_code != 200:
            raise VerifyError(f"operator has no signature for {rid!r} ({resp.status_code})")
        docs[algo] = resp.json()
    text = docs["ecdsa"]["text"]
    if docs["ed25519"]["text"] != text or text.count(":") != 1:
        raise VerifyError("operator returned inconsistent signature texts")
    req_hash, resp_hash = text.split(":")
    return Receipt(
        id=rid,
        request_sha256=req_hash,
        response_sha256=resp_hash,
        signing_address=docs["ecdsa"]["signing_address"],
        ecdsa_signature=docs["ecdsa"]["signature"],
        ed25519_public_key=docs["ed25519"]["signing_address"],
        ed25519_signature=docs["ed25519"]["signature"],
        created_at=0,
    )


async def verify_answer(
    request: bytes,
    response: bytes,
    *,
    receipt: Receipt | None = None,
    operator: str | None = None,
    expected_address: str | None = None,
    attest: bool = False,
    http_timeout_s: float = 10.0,
) -> VerifyOutcome:
    notes: list[str] = []
    signed = response
    if response.lstrip().startswith(b"data:") or b"\n: mercato-receipt " in response:
        signed, inline = split_sse_receipt(response)
        if receipt is None and inline is not None:
            receipt = inline
            notes.append("receipt taken from the stream's inline comment")
    operator = operator.rstrip("/") if operator else None
    async with httpx.AsyncClient(timeout=http_timeout_s) as client:
        if receipt is None:
            if operator is None:
                raise VerifyError("no receipt: give --receipt, or --operator to fetch it")
            rid = response_id(signed)
            if rid is None:
                raise VerifyError("cannot find the response id in the response bytes")
            try:
                receipt = await fetch_receipt(client, operator, rid)
            except httpx.HTTPError as exc:
                raise VerifyError(f"operator unreachable: {exc}") from exc
            notes.append(f"signature fetched from {operator}")
        result = verify_receipt(receipt, request, signed, expected_address=expected_address)
        outcome = VerifyOutcome(receipt, result, notes=notes)
        if attest and result.ok:
            if operator is None:
                raise VerifyError("--attest needs --operator")
            outcome.attestation = await _attest(client, operator, receipt, outcome)
    return outcome


async def _attest(
    client: httpx.AsyncClient, operator: str, receipt: Receipt, outcome: VerifyOutcome
) -> str:
    nonce = os.urandom(32)
    try:
        resp = await client.get(
            f"{operator}/v1/attestation/report",
            params={"nonce": nonce.hex(), "signing_algo": "ecdsa"},
        )
    except httpx.HTTPError as exc:
        raise VerifyError(f"operator unreachable: {exc}") from exc
    if resp.status_code != 200:
        raise VerifyError(f"attestation report failed with HTTP {resp.status_code}")
    try:
        verify_report_binding(resp.json(), receipt.signing_address, nonce, signing_algo="ecdsa")
    except NoHardwareAttestation:
        outcome.notes.append("operator runs without a TEE: no hardware attestation")
        return "none"
    except (AttestationError, ValueError) as exc:
        outcome.verification = Verification(
            False,
            f"attestation_mismatch: {exc}",
            outcome.verification.request_sha256,
            outcome.verification.response_sha256,
            outcome.verification.signer,
        )
        return "mismatch"
    outcome.notes.append("TDX quote binds the signing address and a fresh nonce")
    return "bound"
