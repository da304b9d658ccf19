"""Hardware attestation: bind an operator's signing key and a client's nonce into a
TEE quote, and check that binding.

Pure API (no I/O on import; httpx is imported only when a dstack provider is built):

- :func:`parse_nonce`, :func:`parse_signing_algo`, :func:`build_report_data`
- :func:`build_attestation_report`, :func:`ensure_signer_served`
- :func:`extract_report_data`, :func:`parse_tdx_quote`, :func:`verify_report_binding`,
  :func:`check_event_log`
- :func:`make_quote_provider` -> :class:`QuoteProvider` (``none``, ``dstack``, ``tappd``)

The wire format is in docs/protocols/attestation.md.
"""

from mercato.attestation.base import GpuEvidenceProvider, Quote, QuoteProvider
from mercato.attestation.errors import AttestationError, AttestationMismatch, NoHardwareAttestation
from mercato.attestation.eventlog import check_event_log, replay_rtmr
from mercato.attestation.factory import QUOTE_PROVIDER_KINDS, make_quote_provider
from mercato.attestation.none import NoneProvider
from mercato.attestation.report import (
    REPORT_VERSION,
    build_attestation_report,
    ensure_signer_served,
)
from mercato.attestation.report_data import (
    DEFAULT_SIGNING_ALGO,
    SIGNING_ALGOS,
    SigningAlgo,
    build_report_data,
    parse_nonce,
    parse_signing_algo,
    signer_bytes,
)
from mercato.attestation.tdx import QuoteFormatError, TdxQuote, extract_report_data, parse_tdx_quote
from mercato.attestation.verify import verify_report_binding

__all__ = [
    "DEFAULT_SIGNING_ALGO",
    "QUOTE_PROVIDER_KINDS",
    "REPORT_VERSION",
    "SIGNING_ALGOS",
    "AttestationError",
    "AttestationMismatch",
    "GpuEvidenceProvider",
    "NoHardwareAttestation",
    "NoneProvider",
    "Quote",
    "QuoteFormatError",
    "QuoteProvider",
    "SigningAlgo",
    "TdxQuote",
    "build_attestation_report",
    "build_report_data",
    "check_event_log",
    "ensure_signer_served",
    "extract_report_data",
    "make_quote_provider",
    "parse_nonce",
    "parse_signing_algo",
    "parse_tdx_quote",
    "replay_rtmr",
    "signer_bytes",
    "verify_report_binding",
]
