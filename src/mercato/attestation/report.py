"""The body of ``GET /v1/attestation/report``, in Dstack vllm-proxy's shape.

The only I/O is through the provider passed in (and the optional GPU seam).
"""

from __future__ import annotations

from typing import Any, Final

from mercato.attestation.base import GpuEvidenceProvider, QuoteProvider
from mercato.attestation.errors import NoHardwareAttestation
from mercato.attestation.report_data import SigningAlgo, build_report_data, signer_bytes
from mercato.attestation.tdx import QuoteFormatError, parse_tdx_quote
from mercato.errors import NotFound, UpstreamError

REPORT_VERSION: Final = 1
"""report_data layout version: 1 = ``signer || nonce`` (vllm-proxy's version 1)."""


def ensure_signer_served(
    requested: str | None, signing_algo: SigningAlgo, signing_address: str
) -> None:
    """vllm-proxy's ``signing_address`` filter: 404 when the caller asks for a signer
    this server does not hold (load balancers broadcast and keep the one 200)."""
    if requested is None:
        return
    try:
        match = signer_bytes(signing_algo, requested) == signer_bytes(signing_algo, signing_address)
    except ValueError:
        match = False
    if not match:
        raise NotFound(
            "Signing address not found on this server",
            code="signing_address_not_found",
            param="signing_address",
        )


async def build_attestation_report(
    provider: QuoteProvider,
    signing_algo: SigningAlgo,
    signing_address: str,
    signing_public_key: str,
    nonce: bytes,
    *,
    gpu: GpuEvidenceProvider | None = None,
) -> dict[str, Any]:
    """Ask ``provider`` for a quote over ``signer || nonce`` and build the report.

    ``signing_address`` is the checksummed address (ecdsa) or the 32-byte public key as
    hex (ed25519); ``signing_public_key`` the uncompressed secp256k1 key without the
    04 prefix (128 hex) or the Ed25519 key (64 hex). With the ``none`` provider the
    report has ``"tee": "none"`` and no quote. Raises what the provider raises
    (``Unavailable``, ``UpstreamError``), never a report without a reason.
    """
    report_data = build_report_data(signing_algo, signing_address, nonce)
    try:
        quote = await provider.get_quote(report_data)
    except NoHardwareAttestation:
        quote = None
    info = await provider.info()
    tee = "none"
    if quote is not None:
        try:
            parsed = parse_tdx_quote(quote.quote_bytes)
        except (QuoteFormatError, ValueError) as exc:
            raise UpstreamError(
                f"{provider.kind} returned an unusable quote: {exc}",
                code="attestation_agent_bad_response",
            ) from exc
        if parsed.report_data != report_data:
            raise UpstreamError(
                f"{provider.kind} returned a quote that does not bind the requested report_data",
                code="attestation_agent_bad_response",
            )
        tee = "tdx"
    quote_hex = quote.quote_hex if quote is not None else None
    body: dict[str, Any] = {
        "signing_address": signing_address,
        "signing_algo": signing_algo,
        "signing_public_key": signing_public_key,
        "request_nonce": nonce.hex(),
        "intel_quote": quote_hex,
        "quote": quote_hex,
        "event_log": list(quote.event_log) if quote is not None else [],
        "vm_config": quote.vm_config if quote is not None else None,
        "nvidia_payload": await gpu.get_payload(nonce) if gpu is not None else None,
        "info": info,
        "tee": tee,
        "report_data": report_data.hex(),
        "version": REPORT_VERSION,
    }
    body["all_attestations"] = [dict(body)]
    return body
