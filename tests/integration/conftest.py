"""Operators started as real processes, the way ``mercato operator serve`` runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

MODEL = "smollm2-135m-instruct"


@dataclass
class OperatorProcess:
    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


def launch_operator(data_dir: Path, port: int | None = None, **env: str) -> OperatorProcess:
    port = port or free_port()
    log = data_dir.with_suffix(".log")
    full_env = {
        **os.environ,
        "MERCATO_OPERATOR__SIGNING__FAST_KDF": "true",
        "MERCATO_OPERATOR__RECEIPTS__FLUSH_INTERVAL_S": "0.02",
        **env,
    }
    argv = [sys.executable, "-m", "mercato.cli.main", "operator", "serve"]
    argv += ["--port", str(port), "--data-dir", str(data_dir)]
    proc = subprocess.Popen(argv, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    op = OperatorProcess(f"http://127.0.0.1:{port}", port, data_dir, proc, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{op.url}/health", timeout=2).status_code == 200:
                return op
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    op.stop(signal.SIGKILL)
    raise RuntimeError(f"operator did not become healthy:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def llama_operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = launch_operator(tmp_path_factory.mktemp("operator") / "data")
    yield op
    op.stop()
