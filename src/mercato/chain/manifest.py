"""The deployment manifest: where Mercato's contracts live on one chain, and their ABIs.

Written by a deployment (``mercato chain up`` / ``mercato chain deploy``) and read by
every other component. The devnet's default location is
``$MERCATO_HOME/devnet/manifest.json`` (``MERCATO_HOME`` defaults to ``./.mercato``).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mercato.chain.errors import ManifestError

MANIFEST_VERSION = 1
CONTRACT_NAMES = ("token", "registry", "escrow")


def mercato_home() -> Path:
    env = os.environ.get("MERCATO_HOME")
    return Path(env) if env else Path.cwd() / ".mercato"


def default_manifest_path() -> Path:
    """``$MERCATO_HOME/devnet/manifest.json``."""
    return mercato_home() / "devnet" / "manifest.json"


def _checksum(value: str) -> str:
    from eth_utils.address import to_checksum_address

    try:
        return str(to_checksum_address(value))
    except ValueError as exc:
        raise ValueError(f"not an address: {value!r}") from exc


class ContractAddresses(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str
    registry: str
    escrow: str

    @field_validator("token", "registry", "escrow")
    @classmethod
    def _address(cls, value: str) -> str:
        return _checksum(value)


class DeploymentParameters(BaseModel):
    """Constructor arguments the contracts were deployed with (seconds, base units)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_stake: int
    unstake_delay: int
    withdraw_delay: int
    challenge_period: int
    arbiter: str
    faucet: str

    @field_validator("arbiter", "faucet")
    @classmethod
    def _address(cls, value: str) -> str:
        return _checksum(value)


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = MANIFEST_VERSION
    chain_id: int
    rpc_url: str
    deployment_block: int
    addresses: ContractAddresses
    abis: dict[str, list[dict[str, Any]]]
    token_decimals: int
    token_symbol: str
    deployer: str
    parameters: DeploymentParameters
    blueprints: dict[str, int] = Field(default_factory=dict)
    funded_accounts: list[str] = Field(default_factory=list)
    compiler: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("deployer")
    @classmethod
    def _address(cls, value: str) -> str:
        return _checksum(value)

    @field_validator("abis")
    @classmethod
    def _all_abis(cls, value: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        missing = [name for name in CONTRACT_NAMES if name not in value]
        if missing:
            raise ValueError(f"missing ABIs for {', '.join(missing)}")
        return value

    @classmethod
    def load(cls, path: Path | None = None) -> Manifest:
        """Read and validate a manifest (default: :func:`default_manifest_path`)."""
        path = path or default_manifest_path()
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ManifestError(
                f"no deployment manifest at {path}; run `mercato chain up` (local devnet) "
                "or `mercato chain deploy --rpc URL`"
            ) from None
        except OSError as exc:
            raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
        try:
            return cls.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            raise ManifestError(f"invalid manifest {path}: {exc}") from exc

    def save(self, path: Path | None = None) -> Path:
        """Write atomically (temporary file + rename); returns the path written."""
        path = path or default_manifest_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(path)
        return path

    def with_rpc_url(self, rpc_url: str) -> Manifest:
        return self.model_copy(update={"rpc_url": rpc_url})
