"""Router settings: ``[router]`` in the TOML file, ``MERCATO_ROUTER__*`` variables.

Example: ``MERCATO_ROUTER__DISCOVERY__MANIFEST=.mercato/devnet/manifest.json`` and
``MERCATO_ROUTER__BILLING__ADMIN_TOKEN=...``. Hosted providers are a list of tables::

    [[router.providers]]
    name = "openai"
    base_url = "https://api.openai.com/v1"
    api_key = "sk-..."
    models = ["gpt-4o-mini"]
    price_in_per_m = 150000       # base units of the token per 1M tokens
    price_out_per_m = 600000
    zdr = true                    # the admin vouches for these compliance flags
    no_train = true
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from mercato.config import MercatoSettings
from mercato.router.selection import DEFAULT_STRATEGY, Strategy


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderConfig(_Section):
    name: str = Field(min_length=1, max_length=64)
    base_url: str  # OpenAI base URL, e.g. https://api.example.com/v1
    api_key: SecretStr | None = None
    models: list[str] = Field(min_length=1)
    model_map: dict[str, str] = Field(default_factory=dict)  # our model id -> theirs
    price_in_per_m: int = Field(default=0, ge=0)
    price_out_per_m: int = Field(default=0, ge=0)
    zdr: bool = False
    no_train: bool = False
    tee: bool = False


class StaticOperator(_Section):
    """An operator known by configuration rather than from the chain (your own nodes, a
    chain-less test network). Its signers are trusted as configured."""

    address: str
    slug: str
    endpoint: str
    signers: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    price_in_per_m: int = Field(default=0, ge=0)
    price_out_per_m: int = Field(default=0, ge=0)
    tee: bool = False
    service_id: int | None = None
    blueprint_id: int | None = None


class DiscoverySettings(_Section):
    manifest: Path | None = None  # None: no chain discovery
    rpc_url: str | None = None  # default: the manifest's
    interval_s: float = Field(default=60.0, gt=0)
    confirmations: int = Field(default=0, ge=0)
    log_chunk: int = Field(default=2000, ge=1)
    probe_interval_s: float = Field(default=15.0, gt=0)
    probe_timeout_s: float = Field(default=3.0, gt=0)


class WeightSettings(_Section):
    price: float = Field(default=0.5, ge=0)
    latency: float = Field(default=0.3, ge=0)
    reputation: float = Field(default=0.2, ge=0)


class RoutingSettings(_Section):
    default_strategy: Strategy = DEFAULT_STRATEGY
    weights: WeightSettings = Field(default_factory=WeightSettings)
    max_retries: int = Field(default=2, ge=0, le=10)
    attempt_timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    total_timeout_s: float = Field(default=120.0, gt=0)
    max_connections: int = Field(default=1024, ge=1)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=5.0, gt=0)
    breaker_max_cooldown_s: float = Field(default=60.0, gt=0)


class BillingSettings(_Section):
    # required: every request needs an API key with credits; optional: requests without
    # a key are served free; off: keys are not checked at all.
    auth: Literal["required", "optional", "off"] = "required"
    admin_token: SecretStr | None = None  # None: the admin API is disabled
    default_max_tokens: int = Field(default=4096, ge=1)  # held when a request sets none
    durable_capture: bool = True  # answer only once the charge is on disk
    key_refresh_s: float = Field(default=5.0, gt=0)  # revocations by other replicas


class HistorySettings(_Section):
    flush_interval_s: float = Field(default=0.2, gt=0)
    max_batch: int = Field(default=2000, ge=1)
    # rows of uncharged requests held while the database is unreachable (~750 bytes
    # each); beyond it new ones are dropped and counted in mercato_router_history_dropped
    max_queued: int = Field(default=200_000, ge=1)


class RouterSettings(MercatoSettings):
    toml_table: ClassVar[str] = "router"
    model_config = SettingsConfigDict(
        env_prefix="MERCATO_ROUTER__", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    data_dir: Path = Path(".mercato/router")
    database_url: str | None = None  # default: sqlite:///<data_dir>/router.db
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    providers: list[ProviderConfig] = Field(default_factory=list)
    operators: list[StaticOperator] = Field(default_factory=list)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'router.db'}"
