"""The quote-provider seam: what a TEE hands back for 64 bytes of report_data.

Pure: types only. Implementations: :class:`mercato.attestation.none.NoneProvider`
(no TEE) and :class:`mercato.attestation.dstack.DstackProvider` (dstack guest agent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Quote:
    """One hardware quote and the evidence that came with it.

    ``quote_hex`` is the raw TDX quote as lower-case hex; ``event_log`` the parsed
    event log (a list of ``{imr, event_type, digest, event, event_payload}``);
    ``vm_config`` the agent's VM configuration as the JSON string it sent (or
    ``None``); ``report_data_hex`` the 64 bytes the quote binds, as hex.
    """

    quote_hex: str
    report_data_hex: str
    event_log: list[dict[str, Any]] = field(default_factory=list)
    vm_config: str | None = None

    @property
    def quote_bytes(self) -> bytes:
        return bytes.fromhex(self.quote_hex)


class QuoteProvider(Protocol):
    """A source of hardware quotes.

    ``get_quote`` raises :class:`~mercato.attestation.errors.NoHardwareAttestation`
    when there is no TEE (never a made-up quote), :class:`mercato.errors.Unavailable`
    when the TEE's agent cannot be reached and :class:`mercato.errors.UpstreamError`
    when it answers badly.
    """

    @property
    def kind(self) -> str: ...

    async def get_quote(self, report_data: bytes) -> Quote:
        """A fresh quote whose report_data field holds exactly these 64 bytes."""
        ...

    async def info(self) -> dict[str, Any]:
        """What the TEE says about itself (app id, measurements, ...); JSON-ready."""
        ...

    async def close(self) -> None: ...


class GpuEvidenceProvider(Protocol):
    """Seam for GPU attestation (none implemented yet).

    ``get_payload`` returns vllm-proxy's ``nvidia_payload``: a JSON *string*
    ``{"nonce": <hex>, "evidence_list": [...], "arch": "HOPPER"}`` bound to the same
    nonce, as NVIDIA's NRAS expects it.
    """

    async def get_payload(self, nonce: bytes) -> str: ...
