"""The whole network, started the way a user starts it: ``mercato up`` as a process
(anvil, contracts, three paid operators, the router, demo wallet, API key). Ctrl-C
(SIGINT) at the end must stop everything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mercato.chain.anvil import find_anvil
from mercato.chain.errors import AnvilNotFound
from mercato.network.local import INFO_FILE, NetworkInfo
from tests.helpers import free_port


def listening(url: str) -> bool:
    host, port = url.rsplit("/", 1)[-1].split(":")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="session")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkInfo]:
    try:
        find_anvil()
    except AnvilNotFound as exc:
        pytest.skip(f"anvil is not installed: {exc}")
    home = tmp_path_factory.mktemp("network")
    base = free_port()
    ports = ["--router-port", str(free_port()), "--anvil-port", str(free_port())]
    # three consecutive operator ports: pick a base whose next two are free too
    for _ in range(50):
        if all(not listening(f"http://127.0.0.1:{base + i}") for i in range(3)):
            break
        base = free_port()
    argv = [
        sys.executable,
        "-m",
        "mercato.cli.main",
        "up",
        "--home",
        str(home),
        *ports,
        "--operator-port",
        str(base),
    ]
    log = home.parent / f"{home.name}-up.log"
    proc = subprocess.Popen(
        argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"}
    )
    info_path = home / INFO_FILE
    deadline = time.monotonic() + 240
    while not info_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"mercato up failed:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    time.sleep(0.3)
    info = NetworkInfo.load(info_path)
    try:
        yield info
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        urls = [info.router_url, info.rpc_url, *(o.url for o in info.operators)]
        still = [u for u in urls if listening(u)]
        assert not still, f"still listening after Ctrl-C: {still}"
        assert code == 0, log.read_text()[-3000:]


@pytest.fixture(scope="session")
def wallet_password(network: NetworkInfo) -> str:
    return Path(network.wallet_password_file).read_text()
