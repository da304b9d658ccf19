"""Mercato: private, verifiable, pay-per-token LLM inference from independent operators.

``mercato.Client`` / ``mercato.AsyncClient`` (the SDK) load lazily, so that importing
``mercato`` pulls in neither openai nor web3.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mercato.client.sdk import AsyncClient, Client

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from mercato.client import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'mercato' has no attribute {name!r}")
