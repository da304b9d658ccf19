"""``mercato verify`` from saved bytes, against a real operator with the real model."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from mercato.protocol.receipts import RECEIPT_HEADER
from tests.integration.conftest import MODEL, OperatorProcess

pytestmark = pytest.mark.model


def run_verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mercato.cli.main", "verify", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def saved(
    llama_operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("saved")
    out: dict[str, Path] = {}
    for stream in (False, True):
        req = orjson.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "Hi there"}],
                "max_tokens": 10,
                "stream": stream,
            }
        )
        resp = httpx.post(f"{llama_operator.url}/v1/chat/completions", content=req, timeout=60)
        tag = "sse" if stream else "json"
        (d / f"{tag}.req").write_bytes(req)
        (d / f"{tag}.resp").write_bytes(resp.content)
        out[f"{tag}.req"], out[f"{tag}.resp"] = d / f"{tag}.req", d / f"{tag}.resp"
        if not stream:
            (d / "receipt.json").write_text(resp.headers[RECEIPT_HEADER])
            out["receipt"] = d / "receipt.json"
    time.sleep(0.2)
    return out


def tamper(path: Path, at: int) -> Path:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    bad = path.with_suffix(".bad")
    bad.write_bytes(bytes(data))
    return bad


def test_verify_passes_on_the_saved_bytes(
    saved: dict[str, Path], llama_operator: OperatorProcess
) -> None:
    address = httpx.get(f"{llama_operator.url}/health").json()["signing_address"]
    ok = run_verify(
        "--request",
        saved["json.req"],
        "--response",
        saved["json.resp"],
        "--receipt",
        saved["receipt"],
        "--expect-address",
        address,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verified" in ok.stdout and address in ok.stdout
    # A stream carries its own receipt after [DONE].
    ok = run_verify("--request", saved["sse.req"], "--response", saved["sse.resp"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Or fetch the signature from the operator by response id.
    ok = run_verify(
        "--request",
        saved["json.req"],
        "--response",
        saved["json.resp"],
        "--operator",
        llama_operator.url,
    )
    assert ok.returncode == 0 and "signature fetched" in ok.stdout


@pytest.mark.parametrize("which", ["req", "resp"])
@pytest.mark.parametrize("kind", ["json", "sse"])
def test_one_changed_byte_fails(saved: dict[str, Path], which: str, kind: str) -> None:
    target = saved[f"{kind}.{which}"]
    bad = tamper(target, 20)
    req = bad if which == "req" else saved[f"{kind}.req"]
    resp = bad if which == "resp" else saved[f"{kind}.resp"]
    extra = ["--receipt", saved["receipt"]] if kind == "json" else []
    result = run_verify("--request", req, "--response", resp, *extra)
    assert result.returncode == 1
    reason = "request_hash_mismatch" if which == "req" else "response_hash_mismatch"
    assert reason in result.stderr


def test_wrong_expected_signer_fails(saved: dict[str, Path]) -> None:
    result = run_verify(
        "--request",
        saved["json.req"],
        "--response",
        saved["json.resp"],
        "--receipt",
        saved["receipt"],
        "--expect-address",
        "0x0000000000000000000000000000000000000001",
    )
    assert result.returncode == 1 and "unexpected_signer" in result.stderr


def test_attest_without_tee(saved: dict[str, Path], llama_operator: OperatorProcess) -> None:
    args = [
        "--request",
        saved["json.req"],
        "--response",
        saved["json.resp"],
        "--operator",
        llama_operator.url,
        "--attest",
    ]
    result = run_verify(*args)
    assert result.returncode == 0 and "no hardware attestation" in result.stdout
    strict = run_verify(*args, "--require-tee")
    assert strict.returncode == 1 and "no hardware attestation" in strict.stderr


def test_missing_inputs_are_clear_errors(saved: dict[str, Path], tmp_path: Path) -> None:
    result = run_verify("--request", tmp_path / "nope", "--response", saved["json.resp"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    result = run_verify("--request", saved["json.req"], "--response", saved["json.resp"])
    assert result.returncode == 2 and "no receipt" in result.stderr
