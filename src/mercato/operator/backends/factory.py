"""Build the backend that the settings name."""

from __future__ import annotations

from mercato.operator.backends.base import Backend
from mercato.operator.settings import BackendSettings


def make_backend(settings: BackendSettings) -> Backend:
    if settings.kind == "llama-cpp":
        from mercato.operator.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(settings.llama_cpp)
    if settings.kind == "openai":
        from mercato.operator.backends.openai_upstream import OpenAIUpstreamBackend

        return OpenAIUpstreamBackend(settings.openai)
    from mercato.operator.backends.managed import ManagedBackend

    return ManagedBackend(settings.managed)
