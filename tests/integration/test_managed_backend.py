"""The ``managed`` backend supervising a real ``python -m llama_cpp.server`` child."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from mercato.errors import ConfigError
from mercato.operator.app import create_app
from mercato.operator.backends.managed import ManagedBackend, build_command
from mercato.operator.settings import ManagedSettings, OperatorSettings
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, verify_receipt
from tests.helpers import serve_app

pytestmark = pytest.mark.model
BODY = (
    b'{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"Hi"}],"max_tokens":8}'
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_supervises_restarts_and_stops_the_child(tmp_path: Path) -> None:
    managed = ManagedSettings(
        preset="llama-cpp-server", restart_backoff_s=0.2, startup_timeout_s=120
    )
    backend = ManagedBackend(managed)
    settings = OperatorSettings(data_dir=tmp_path, signing={"fast_kdf": True})
    async with (
        serve_app(create_app(settings, backend=backend)) as url,
        httpx.AsyncClient(timeout=60) as c,
    ):
        resp = await c.post(f"{url}/v1/chat/completions", content=BODY)
        assert resp.status_code == 200, resp.text
        receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
        assert verify_receipt(receipt, BODY, resp.content).ok

        first_pid = backend.pid
        assert first_pid is not None
        os.killpg(first_pid, signal.SIGKILL)  # the model server crashes
        await asyncio.sleep(0.1)
        down = await c.post(f"{url}/v1/chat/completions", content=BODY)
        assert down.status_code == 503 and down.headers["Retry-After"] == "2"
        assert down.json()["error"]["code"] == "backend_restarting"

        async with asyncio.timeout(120):
            while not await backend.ready():
                await asyncio.sleep(0.2)
        assert backend.restarts == 1 and backend.pid != first_pid
        again = await c.post(f"{url}/v1/chat/completions", content=BODY)
        assert again.status_code == 200
        last_pid = backend.pid
    assert last_pid is not None and not alive(last_pid)  # stopped with the operator


def test_presets_build_the_expected_commands() -> None:
    argv, name = build_command(ManagedSettings(preset="vllm", model="Qwen/Qwen3-8B"), 8123)
    assert argv[:3] == ["vllm", "serve", "Qwen/Qwen3-8B"]
    assert argv[3:7] == ["--host", "127.0.0.1", "--port", "8123"] and name == "Qwen/Qwen3-8B"
    argv, name = build_command(
        ManagedSettings(preset="custom", command=["srv", "--port={port}"], served_model_name="m"), 9
    )
    assert argv == ["srv", "--port=9"] and name == "m"
    with pytest.raises(ConfigError):
        build_command(ManagedSettings(preset="vllm"), 1)


async def test_a_child_that_cannot_start_is_a_clear_error() -> None:
    backend = ManagedBackend(
        ManagedSettings(
            preset="custom", command=["false"], served_model_name="m", startup_timeout_s=10
        )
    )
    with pytest.raises(Exception, match="exited with code 1 while starting"):
        await backend.start()
