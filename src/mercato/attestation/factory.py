"""Build the configured quote provider (from the operator's settings, in its lifespan)."""

from __future__ import annotations

from typing import Final

from mercato.attestation.base import QuoteProvider
from mercato.attestation.none import NoneProvider
from mercato.errors import ConfigError

QUOTE_PROVIDER_KINDS: Final = ("none", "dstack", "tappd")


def make_quote_provider(kind: str, socket_path: str | None = None) -> QuoteProvider:
    """``none`` | ``dstack`` | ``tappd`` (legacy dstack agent); ``socket_path`` overrides
    the agent socket (``/var/run/dstack.sock``, ``/var/run/tappd.sock``) and is ignored
    by ``none``.

    Nothing is contacted here; call ``await provider.info()`` at start-up to fail fast
    when the agent is missing.
    """
    if kind == "none":
        return NoneProvider()
    if kind in ("dstack", "tappd"):
        from mercato.attestation.dstack import DstackProvider  # keeps httpx out of pure imports

        return DstackProvider(socket_path, legacy_tappd=kind == "tappd")
    raise ConfigError(
        f"unknown attestation provider kind {kind!r}; expected one of "
        + ", ".join(QUOTE_PROVIDER_KINDS),
        code="unknown_quote_provider",
        param="kind",
    )
