"""The seam between the operator's HTTP layer and whatever produces tokens.

A backend returns the exact bytes the operator will send: a JSON body, or one SSE event
at a time. The HTTP layer hashes and signs those bytes without re-serializing them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from mercato.protocol.openai import ChatCompletionRequest, CompletionRequest

Endpoint = Literal["chat", "completion"]
AnyRequest = ChatCompletionRequest | CompletionRequest
DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_dict(cls, doc: Any) -> Usage | None:
        if not isinstance(doc, dict):
            return None
        try:
            return cls(int(doc["prompt_tokens"]), int(doc.get("completion_tokens") or 0))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole (non-streamed) response: ``body`` is sent byte for byte."""

    body: bytes
    id: str
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One SSE event, ``raw`` exactly as sent, including its terminating blank line."""

    raw: bytes
    id: str | None = None
    usage: Usage | None = None
    done: bool = False
    tokens: int = 0  # completion tokens this event carries (for billing cut-off streams)


def prompt_bytes_bound(endpoint: Endpoint, request: AnyRequest) -> int:
    """An upper bound on prompt tokens without a tokenizer: byte-level BPE tokens are at
    least one byte each, plus a generous allowance for the chat template's markup."""
    if isinstance(request, ChatCompletionRequest):
        text = sum(len(m.text().encode()) for m in request.messages)
        return text + 16 * len(request.messages) + 32
    assert isinstance(request, CompletionRequest)
    return len(request.prompt_text().encode()) + 8


def chunk_has_text(doc: dict[str, Any]) -> bool:
    """Whether a chat or completion chunk carries generated text (one token, usually)."""
    for choice in doc.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if (isinstance(delta, dict) and delta.get("content")) or choice.get("text"):
            return True
    return False


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class Backend(Protocol):
    """Produces completions for the models it serves. One instance per operator process."""

    kind: str

    @property
    def default_max_tokens(self) -> int:
        """The output ceiling when a request names none."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def models(self) -> list[str]: ...

    async def ready(self) -> bool: ...

    def prompt_tokens(self, endpoint: Endpoint, request: AnyRequest) -> int:
        """The request's prompt tokens: exact where the tokenizer is at hand, else an
        upper bound. Used to price a request before serving it."""
        ...

    async def complete(self, endpoint: Endpoint, request: AnyRequest, raw: bytes) -> Completion:
        """The whole response. Raises MercatoError subclasses for failures."""
        ...

    def stream(
        self, endpoint: Endpoint, request: AnyRequest, raw: bytes
    ) -> AsyncGenerator[StreamEvent, None]:
        """SSE events ending with ``data: [DONE]``; closing the iterator stops generation."""
        ...
