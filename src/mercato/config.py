"""Settings plumbing shared by every process: a TOML file plus ``MERCATO_*`` variables.

Each process has its own settings class (``OperatorSettings``, ``RouterSettings``, ...)
that reads one table of the TOML file (``[operator]``, ``[router]``, ...). Environment
variables override the file: ``MERCATO_OPERATOR__PORT=9000`` sets ``[operator] port``
and ``MERCATO_OPERATOR__BACKEND__KIND=openai`` sets ``[operator.backend] kind``.
Precedence, highest first: explicit arguments, environment, TOML file, defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_ENV = "MERCATO_CONFIG"


class _TomlTableSource(PydanticBaseSettingsSource):
    """Reads one table of the TOML file named by ``_config_file`` or ``MERCATO_CONFIG``."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None, table: str) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            with path.open("rb") as fh:
                doc = tomllib.load(fh)
            section = doc.get(table, {})
            if not isinstance(section, dict):
                raise ValueError(f"{path}: [{table}] must be a table")
            self._data = section

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class MercatoSettings(BaseSettings):
    """Base class: subclasses set ``toml_table`` and ``model_config`` (env prefix)."""

    toml_table: ClassVar[str] = ""
    _config_path: ClassVar[Path | None] = None

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = cls._config_path
        if path is None and os.environ.get(CONFIG_ENV):
            path = Path(os.environ[CONFIG_ENV])
        return (init_settings, env_settings, _TomlTableSource(settings_cls, path, cls.toml_table))


S = TypeVar("S", bound=MercatoSettings)


def load_settings(cls: type[S], config: Path | None = None, **overrides: Any) -> S:
    """Build ``cls`` from ``config`` (or ``$MERCATO_CONFIG``), the environment and overrides."""
    if config is not None and not config.is_file():
        raise FileNotFoundError(f"config file not found: {config}")
    cls._config_path = config
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        cls._config_path = None
