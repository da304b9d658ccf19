"""The ``none`` provider: the operator runs without a TEE, and says so plainly."""

from __future__ import annotations

from typing import Any, Final

from mercato.attestation.base import Quote
from mercato.attestation.errors import NoHardwareAttestation

NO_TEE_MESSAGE: Final = (
    "This operator does not run in a trusted execution environment: no hardware "
    "attestation is available. Responses are still signed by the operator's keys, "
    "which proves who answered, not what hardware or software produced the answer."
)


class NoneProvider:
    """No TEE. ``get_quote`` always raises; it never invents a quote."""

    kind: str = "none"

    async def get_quote(self, report_data: bytes) -> Quote:
        raise NoHardwareAttestation(NO_TEE_MESSAGE)

    async def info(self) -> dict[str, Any]:
        return {"tee": "none", "hardware_attestation": False, "message": NO_TEE_MESSAGE}

    async def close(self) -> None:
        return None
