"""Child processes of the network: each in its own process group (so Ctrl-C reaches
the parent, which stops them in order), killed with the parent on Linux
(``PR_SET_PDEATHSIG``), stopped by SIGTERM to the group, then SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from mercato.errors import MercatoError


class NetworkError(MercatoError):
    code = "network_error"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-limit:]
        return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def spawn(name: str, argv: list[str], env: Mapping[str, str], log: Path, url: str) -> Child:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    return Child(name, proc, log, url)


async def wait_healthy(child: Child, limit_s: float = 120.0, path: str = "/health") -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if not child.alive():
                raise NetworkError(
                    f"{child.name} exited ({child.proc.returncode}); log {child.log}:\n"
                    + child.tail()
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(child.url + path)).status_code == 200:
                    return
            await asyncio.sleep(0.25)
    raise NetworkError(f"{child.name} not healthy after {limit_s:.0f} s; log {child.log}")
