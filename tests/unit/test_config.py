from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mercato.config import load_settings
from mercato.operator.settings import OperatorSettings


def test_toml_then_env_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "mercato.toml"
    cfg.write_text(
        '[operator]\nport = 9001\nhost = "127.0.0.1"\n'
        '[operator.backend]\nkind = "openai"\n'
        '[operator.backend.openai]\nbase_url = "http://127.0.0.1:1/v1"\n'
    )
    s = load_settings(OperatorSettings, cfg)
    assert (s.port, s.backend.kind, s.backend.openai.base_url) == (
        9001,
        "openai",
        "http://127.0.0.1:1/v1",
    )

    monkeypatch.setenv("MERCATO_OPERATOR__PORT", "9002")
    monkeypatch.setenv("MERCATO_OPERATOR__BACKEND__OPENAI__API_KEY", "sk-secret")
    s = load_settings(OperatorSettings, cfg)
    assert s.port == 9002 and s.backend.kind == "openai"
    assert s.backend.openai.api_key is not None
    assert "sk-secret" not in repr(s) and "sk-secret" not in str(s.model_dump())

    s = load_settings(OperatorSettings, cfg, port=9003)
    assert s.port == 9003


def test_unknown_keys_and_bad_values_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[operator]\nprot = 1\n")
    with pytest.raises(ValidationError):
        load_settings(OperatorSettings, cfg)
    cfg.write_text('[operator.backend]\nkind = "gpt"\n')
    with pytest.raises(ValidationError):
        load_settings(OperatorSettings, cfg)
    with pytest.raises(FileNotFoundError):
        load_settings(OperatorSettings, tmp_path / "missing.toml")
