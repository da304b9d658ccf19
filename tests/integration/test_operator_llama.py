"""The operator node with the real small model, driven by the official ``openai`` client."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import nacl.signing
import openai
import orjson
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, split_sse_receipt
from tests.integration.conftest import MODEL, OperatorProcess, launch_operator

pytestmark = pytest.mark.model


def client(op: OperatorProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{op.url}/v1", api_key="unused", max_retries=0)


def test_chat_non_streaming_with_openai_client(llama_operator: OperatorProcess) -> None:
    resp = client(llama_operator).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is 2+2?"}],
        temperature=0,
        max_tokens=40,
    )
    answer = resp.choices[0].message.content or ""
    assert "4" in answer
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 5 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.id.startswith("chatcmpl-") and resp.model == MODEL


def test_chat_streaming_with_usage(llama_operator: OperatorProcess) -> None:
    stream = client(llama_operator).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name three colors."}],
        temperature=0,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert sum(color in text.lower() for color in ("red", "blue", "green", "yellow")) >= 2
    assert len({c.id for c in chunks}) == 1
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 5
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")


def test_completions_max_tokens_and_seed(llama_operator: OperatorProcess) -> None:
    c = client(llama_operator)
    r = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert r.usage is not None and r.usage.completion_tokens == 5
    assert r.choices[0].finish_reason == "length" and r.choices[0].text
    runs = [
        c.completions.create(
            model=MODEL, prompt="My favourite animal is", max_tokens=12, temperature=1.0, seed=1234
        )
        .choices[0]
        .text
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    stopped = c.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from 1 to 10 with commas."}],
        temperature=0,
        max_completion_tokens=40,
        stop=["5"],
    )
    assert "5" not in (stopped.choices[0].message.content or "")


def test_models_health_metrics(llama_operator: OperatorProcess) -> None:
    models = client(llama_operator).models.list()
    assert [m.id for m in models.data] == [MODEL]
    health = httpx.get(f"{llama_operator.url}/health").json()
    assert health["status"] == "ok" and health["backend"] == "llama-cpp"
    metrics = httpx.get(f"{llama_operator.url}/metrics").text
    assert "mercato_operator_requests_total" in metrics
    assert 'mercato_operator_tokens_total{kind="completion"}' in metrics


def _independent_check(request: bytes, signed: bytes, receipt: Receipt) -> None:
    """What a third party does with nothing but the bytes, eth_account and PyNaCl."""
    text = f"{hashlib.sha256(request).hexdigest()}:{hashlib.sha256(signed).hexdigest()}"
    assert receipt.text == text
    signer = Account.recover_message(encode_defunct(text=text), signature=receipt.ecdsa_signature)
    assert signer == receipt.signing_address
    nacl.signing.VerifyKey(bytes.fromhex(receipt.ed25519_public_key)).verify(
        text.encode(), bytes.fromhex(receipt.ed25519_signature)
    )


@pytest.mark.parametrize("stream", [False, True])
def test_receipts_verify_independently(llama_operator: OperatorProcess, stream: bool) -> None:
    request = orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 12,
            "temperature": 0,
            "stream": stream,
        }
    )
    resp = httpx.post(f"{llama_operator.url}/v1/chat/completions", content=request, timeout=60)
    assert resp.status_code == 200
    if stream:
        signed, receipt = split_sse_receipt(resp.content)
        assert signed.endswith(b"data: [DONE]\n\n") and receipt is not None
    else:
        signed, receipt = resp.content, Receipt.from_json(resp.headers[RECEIPT_HEADER])
    _independent_check(request, signed, receipt)
    assert (
        receipt.signing_address
        == httpx.get(f"{llama_operator.url}/health").json()["signing_address"]
    )
    time.sleep(0.2)
    doc = httpx.get(f"{llama_operator.url}/v1/signature/{receipt.id}").json()
    assert doc["text"] == receipt.text and doc["signature"] == receipt.ecdsa_signature
    assert doc["signing_address"] == receipt.signing_address and doc["signing_algo"] == "ecdsa"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"model": "smollm2', 400, "invalid_json"),
        (b'{"model":"nope","messages":[{"role":"user","content":"x"}]}', 404, "model_not_found"),
        (
            b'{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"x"}],"temperature":9}',
            400,
            "invalid_parameter",
        ),
        (
            b'{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"x"}],"n":3}',
            400,
            "invalid_parameter",
        ),
        (
            b'{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"'
            + b"x" * (5 * 1024 * 1024)
            + b'"}]}',
            413,
            "request_too_large",
        ),
    ],
)
def test_bad_input_gets_openai_errors(
    llama_operator: OperatorProcess, body: bytes, status: int, code: str
) -> None:
    resp = httpx.post(f"{llama_operator.url}/v1/chat/completions", content=body, timeout=30)
    assert resp.status_code == status
    err = resp.json()["error"]
    assert err["code"] == code and err["message"] and "type" in err and "param" in err
    assert RECEIPT_HEADER not in resp.headers


def test_openai_client_raises_typed_errors(llama_operator: OperatorProcess) -> None:
    with pytest.raises(openai.NotFoundError):
        client(llama_operator).chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.BadRequestError):
        client(llama_operator).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], top_p=7
        )
    r = httpx.get(f"{llama_operator.url}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_endpoint"
    r = httpx.get(f"{llama_operator.url}/v1/signature/chatcmpl-unknown")
    assert r.status_code == 404 and r.json()["error"]["code"] == "signature_not_found"
    r = httpx.get(f"{llama_operator.url}/v1/signature/x", params={"signing_algo": "rsa"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_signing_algo"


async def test_client_disconnect_mid_stream(llama_operator: OperatorProcess) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 400,
        "temperature": 0.8,
        "stream": True,
    }
    async with httpx.AsyncClient(timeout=60) as c:
        async with c.stream("POST", f"{llama_operator.url}/v1/chat/completions", json=body) as resp:
            first = b""
            async for chunk in resp.aiter_bytes():
                first += chunk
                if first.count(b"\n\n") >= 3:
                    break
        rid = orjson.loads(first.split(b"\n\n")[0][6:])["id"]
        await asyncio.sleep(0.5)
        # No receipt for a response that was never fully sent ...
        r = await c.get(f"{llama_operator.url}/v1/signature/{rid}")
        assert r.status_code == 404
        # ... and the server goes on serving, promptly: generation was stopped.
        started = time.monotonic()
        ok = await c.post(
            f"{llama_operator.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
        )
        assert ok.status_code == 200 and time.monotonic() - started < 5
        metrics = (await c.get(f"{llama_operator.url}/metrics")).text
        assert 'mercato_operator_streams_aborted_total{reason="client_disconnected"}' in metrics


async def test_full_queue_answers_503_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    op = launch_operator(
        tmp_path_factory.mktemp("busy") / "data",
        MERCATO_OPERATOR__BACKEND__LLAMA_CPP__MAX_WAITING="1",
    )
    try:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 150,
            "temperature": 0.7,
        }
        async with httpx.AsyncClient(timeout=120) as c:
            results = await asyncio.gather(
                *(c.post(f"{op.url}/v1/chat/completions", json=body) for _ in range(4))
            )
        statuses = sorted(r.status_code for r in results)
        assert statuses.count(200) == 2 and statuses.count(503) == 2
        busy = next(r for r in results if r.status_code == 503)
        assert busy.headers["Retry-After"] == "1"
        assert busy.json()["error"]["type"] == "rate_limit_error"
    finally:
        op.stop()


def test_restart_keeps_address_and_receipts(tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.mktemp("restart") / "data"
    op = launch_operator(data)
    resp = httpx.post(
        f"{op.url}/v1/completions",
        json={"model": MODEL, "prompt": "Hello", "max_tokens": 4},
        timeout=60,
    )
    receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
    time.sleep(0.2)
    op.stop()
    again = launch_operator(data, port=op.port)
    try:
        assert httpx.get(f"{again.url}/health").json()["signing_address"] == receipt.signing_address
        doc = httpx.get(
            f"{again.url}/v1/signature/{receipt.id}", params={"signing_algo": "ed25519"}
        ).json()
        assert doc["signature"] == receipt.ed25519_signature
    finally:
        again.stop()
