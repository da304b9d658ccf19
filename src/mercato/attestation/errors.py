"""Attestation errors: the binding between signer, nonce and quote did not hold.

Two distinct non-passing outcomes, both under :class:`AttestationError`:

- :class:`AttestationMismatch`: the report is present but does not bind the expected
  signer and nonce (or is malformed). ``code`` says which check failed.
- :class:`NoHardwareAttestation`: the operator runs without a TEE (``"tee": "none"``);
  there is nothing to check. This is not a pass and not a forgery either.

Errors from talking to the quote source (socket missing, agent answered badly) use
:class:`mercato.errors.Unavailable` and :class:`mercato.errors.UpstreamError`.
"""

from __future__ import annotations

from mercato.errors import MercatoError


class AttestationError(MercatoError):
    """Base of the attestation verification outcomes that are not a pass."""

    status = 502
    type = "attestation_error"
    code = "attestation_error"


class AttestationMismatch(AttestationError):
    """The report does not bind the expected signer and nonce.

    Codes (stable): ``signing_algo_mismatch``, ``signer_mismatch``, ``nonce_mismatch``,
    ``quote_missing``, ``quote_field_mismatch``, ``quote_malformed``,
    ``quote_unsupported``, ``report_data_field_mismatch``, ``quote_signer_mismatch``,
    ``quote_nonce_mismatch``, ``report_malformed``.
    """

    code = "attestation_mismatch"


class NoHardwareAttestation(AttestationError):
    """The report (or provider) says plainly that no TEE quote exists."""

    code = "no_hardware_attestation"
