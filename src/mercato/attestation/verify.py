"""Check that an attestation report binds an expected signer and nonce. Pure.

This checks the *binding* only: that the TDX quote's report_data field holds
``signer || nonce``. It does not check that Intel signed the quote (that needs the
PCK certificate chain, CRLs and TCB collateral; see docs/protocols/attestation.md),
nor what software the measurements describe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mercato.attestation.errors import AttestationMismatch, NoHardwareAttestation
from mercato.attestation.report_data import (
    NONCE_LEN,
    SIGNER_FIELD_LEN,
    SIGNING_ALGOS,
    SigningAlgo,
    signer_bytes,
)
from mercato.attestation.tdx import QuoteFormatError, TdxQuote, parse_tdx_quote


def _fail(code: str, message: str) -> AttestationMismatch:
    return AttestationMismatch(message, code=code)


def _report_algo(report: Mapping[str, Any]) -> SigningAlgo:
    value = report.get("signing_algo")
    for algo in SIGNING_ALGOS:
        if value == algo:
            return algo
    raise _fail("report_malformed", f"report has no valid signing_algo: {value!r}")


def _nonce_bytes(nonce: bytes | str) -> bytes:
    raw = bytes.fromhex(nonce) if isinstance(nonce, str) else nonce
    if len(raw) != NONCE_LEN:
        raise ValueError(f"nonce must be {NONCE_LEN} bytes, got {len(raw)}")
    return raw


def _quote_hex(report: Mapping[str, Any]) -> str | None:
    intel, plain = report.get("intel_quote"), report.get("quote")
    for value in (intel, plain):
        if value is not None and not isinstance(value, str):
            raise _fail("report_malformed", "intel_quote/quote must be hex strings or null")
    if intel and plain and intel.lower() != plain.lower():
        raise _fail("quote_field_mismatch", "report's intel_quote and quote differ")
    return intel or plain or None


def verify_report_binding(
    report: Mapping[str, Any],
    expected_signer: str | bytes,
    nonce: bytes | str,
    *,
    signing_algo: SigningAlgo | None = None,
) -> TdxQuote:
    """Raise unless ``report`` carries a TDX quote whose report_data is
    ``expected_signer`` (zero-padded to 32 bytes) followed by ``nonce``.

    ``expected_signer``: the Ethereum address (ecdsa) or the 32-byte Ed25519 public key
    (hex or bytes). ``nonce``: the 32 bytes (or 64 hex) the verifier sent. Returns the
    parsed quote (measurements for further checks) on success.

    Raises :class:`NoHardwareAttestation` for a ``"tee": "none"`` report (not a pass),
    :class:`AttestationMismatch` with a ``code`` for everything else, and ``ValueError``
    when the expected values themselves are malformed.
    """
    algo = _report_algo(report)
    if signing_algo is not None and signing_algo != algo:
        raise _fail("signing_algo_mismatch", f"asked for {signing_algo}, report is {algo}")
    want_signer = signer_bytes(algo, expected_signer)
    want_nonce = _nonce_bytes(nonce)
    try:
        got_signer = signer_bytes(algo, report.get("signing_address", ""))
    except (TypeError, ValueError) as exc:
        raise _fail("report_malformed", f"report's signing_address is unusable: {exc}") from exc
    if got_signer != want_signer:
        raise _fail(
            "signer_mismatch",
            f"report is for signer {got_signer.hex()}, expected {want_signer.hex()}",
        )
    got_nonce = report.get("request_nonce")
    if not isinstance(got_nonce, str) or got_nonce.lower() != want_nonce.hex():
        raise _fail("nonce_mismatch", f"report echoes nonce {got_nonce!r}, sent {want_nonce.hex()}")

    quote_hex = _quote_hex(report)
    if quote_hex is None:
        if report.get("tee") == "none":
            raise NoHardwareAttestation(
                "the operator reports no TEE: there is no hardware quote to bind its key"
            )
        raise _fail("quote_missing", "report has no quote but does not say tee is 'none'")
    try:
        quote = parse_tdx_quote(bytes.fromhex(quote_hex))
    except QuoteFormatError as exc:
        code = "quote_unsupported" if exc.unsupported else "quote_malformed"
        raise _fail(code, f"quote: {exc}") from exc
    except ValueError as exc:
        raise _fail("quote_malformed", "quote is not hex") from exc

    bound = quote.report_data
    claimed = report.get("report_data")
    if isinstance(claimed, str) and claimed.lower() != bound.hex():
        raise _fail("report_data_field_mismatch", "report_data field differs from the quote's")
    want_field = want_signer.ljust(SIGNER_FIELD_LEN, b"\x00")
    if bound[:SIGNER_FIELD_LEN] != want_field:
        raise _fail(
            "quote_signer_mismatch",
            f"quote binds signer field {bound[:SIGNER_FIELD_LEN].hex()}, "
            f"expected {want_field.hex()}",
        )
    if bound[SIGNER_FIELD_LEN:] != want_nonce:
        raise _fail(
            "quote_nonce_mismatch",
            f"quote binds nonce {bound[SIGNER_FIELD_LEN:].hex()}, expected {want_nonce.hex()}",
        )
    return quote
