"""``mercato chain up`` and ``mercato chain deploy`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account

import mercato
from mercato.chain.anvil import Anvil, free_port, port_in_use
from mercato.chain.client import ChainClient
from mercato.chain.manifest import Manifest

from .conftest import NewAccount

pytestmark = pytest.mark.chain

SRC = str(Path(mercato.__file__).resolve().parents[1])


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MERCATO_HOME=str(home), COLUMNS="200", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


def mercato_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mercato.cli.main", "chain", *args]


def test_chain_up_deploys_and_stops_on_ctrl_c(anvil_binary: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        mercato_cli("up", "--port", str(port), "--accounts", "3"),
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    manifest_path = tmp_path / "devnet" / "manifest.json"
    try:
        deadline = time.monotonic() + 90
        while not manifest_path.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no manifest after 90 s"
            time.sleep(0.2)
        manifest = Manifest.load(manifest_path)
        assert manifest.rpc_url == f"http://127.0.0.1:{port}"
        assert len(manifest.funded_accounts) == 3
        assert port_in_use(port)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert str(manifest_path) in out and manifest.addresses.escrow in out
    assert "devnet stopped" in out
    assert not manifest_path.exists()
    assert not port_in_use(port)


def test_chain_up_reports_a_taken_port(anvil: Anvil, tmp_path: Path) -> None:
    result = subprocess.run(
        mercato_cli("up", "--port", str(anvil.port)),
        env=cli_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "already in use" in result.stderr and "Traceback" not in result.stderr


def test_chain_up_reports_missing_anvil(tmp_path: Path) -> None:
    env = cli_env(tmp_path, MERCATO_CACHE=str(tmp_path / "empty"), PATH=str(tmp_path))
    env.pop("MERCATO_ANVIL", None)
    result = subprocess.run(
        mercato_cli("up", "--port", str(free_port())),
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "anvil not found" in result.stderr and "scripts/setup.sh" in result.stderr
    assert "Traceback" not in result.stderr


async def test_chain_deploy_to_an_existing_chain(
    anvil: Anvil, new_account: NewAccount, tmp_path: Path
) -> None:
    deployer = await new_account()
    keystore = tmp_path / "deployer.json"
    keystore.write_text(json.dumps(Account.encrypt(deployer.key, "s3cret", iterations=2)))
    manifest_path = tmp_path / "elsewhere.json"
    result = subprocess.run(
        mercato_cli("deploy", "--rpc", anvil.rpc_url, "--key-file", str(keystore),
                    "--manifest", str(manifest_path), "--min-stake", "5"),
        env=cli_env(tmp_path, MERCATO_KEY_PASSWORD="s3cret"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = Manifest.load(manifest_path)
    assert manifest.deployer == deployer.address
    assert manifest.parameters.min_stake == 5 * 10**6
    async with ChainClient(manifest) as client:
        await client.check()
        assert await client.registry.owner() == deployer.address

    wrong = subprocess.run(
        mercato_cli("deploy", "--rpc", anvil.rpc_url, "--private-key-env", "NOT_SET_ANYWHERE"),
        env=cli_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert wrong.returncode == 1 and "NOT_SET_ANYWHERE is not set" in wrong.stderr
