from __future__ import annotations

import orjson
import pytest

from mercato.errors import InvalidRequest
from mercato.protocol.openai import ChatCompletionRequest, CompletionRequest, parse_body


def chat(**fields: object) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return orjson.dumps(body)


def test_valid_chat_body_keeps_unknown_fields() -> None:
    req, doc = parse_body(chat(max_completion_tokens=5, logit_bias={"1": 2}), ChatCompletionRequest)
    assert req.token_limit() == 5
    assert doc["logit_bias"] == {"1": 2}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"model": ""}, "model"),
    ],
)
def test_out_of_range_parameters_name_the_param(fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(chat(**fields), ChatCompletionRequest)
    assert info.value.status == 400
    assert info.value.param == param
    assert info.value.code == "invalid_parameter"


def test_image_parts_are_refused() -> None:
    body = chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])
    with pytest.raises(InvalidRequest, match="only text"):
        parse_body(body, ChatCompletionRequest)


@pytest.mark.parametrize("raw", [b"{", b"[1,2]", b"", b"\xff\xfe"])
def test_malformed_json(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(raw, ChatCompletionRequest)
    assert info.value.code == "invalid_json"


def test_completion_prompt_rules() -> None:
    req, _ = parse_body(b'{"model":"m","prompt":["one"]}', CompletionRequest)
    assert req.prompt_text() == "one"
    with pytest.raises(InvalidRequest):
        parse_body(b'{"model":"m","prompt":["a","b"]}', CompletionRequest)
