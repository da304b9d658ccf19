"""A fresh attestation of an operator, on request: its TDX quote must bind the
address that signed an answer's receipt and a random nonce (the report's format:
docs/protocols/attestation.md)."""

from __future__ import annotations

import os
from typing import Literal

import httpx

from mercato.attestation import AttestationError, NoHardwareAttestation, verify_report_binding

Attested = Literal["bound", "none"]


class AttestationFailed(Exception):
    """The operator's report is missing, or does not bind the signer and the nonce."""


async def attest_operator(
    operator_url: str, signing_address: str, *, timeout_s: float = 10.0
) -> Attested:
    """``"bound"`` (a TEE quote binds ``signing_address`` and our nonce) or ``"none"``
    (the operator says it runs without a TEE); :class:`AttestationFailed` otherwise."""
    nonce = os.urandom(32)
    url = operator_url.rstrip("/").removesuffix("/v1") + "/v1/attestation/report"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            resp = await http.get(url, params={"nonce": nonce.hex(), "signing_algo": "ecdsa"})
    except httpx.HTTPError as exc:
        raise AttestationFailed(f"operator unreachable: {exc}") from exc
    if resp.status_code != 200:
        raise AttestationFailed(f"attestation report failed with HTTP {resp.status_code}")
    try:
        verify_report_binding(resp.json(), signing_address, nonce, signing_algo="ecdsa")
    except NoHardwareAttestation:
        return "none"
    except (AttestationError, ValueError) as exc:
        raise AttestationFailed(f"attestation does not bind the signer: {exc}") from exc
    return "bound"
