"""Compile Vyper sources with the ``vyper`` package; cache ABI + bytecode by source hash.

Imports (``from snekmate.utils import ecdsa``, ``import PaymentToken``) resolve against
the source's own directory and ``sys.path``, as the ``vyper`` command does. The cache
key covers the compiler version, snekmate's version and every ``.vy``/``.vyi`` file
under the source's directory, so editing an imported module recompiles its users.

Installed without a checkout, deployment falls back to artifacts packaged in
``mercato/chain/artifacts/`` (written by ``python -m mercato.chain.compile``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mercato.chain.errors import CompileError

CORE_CONTRACTS = ("PaymentToken", "OperatorRegistry", "PaymentEscrow")
_PACKAGED = Path(__file__).with_name("artifacts")


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed creation code
    source_hash: str
    compiler: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "source_hash": self.source_hash,
            "compiler": self.compiler,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            name=str(data["name"]),
            abi=list(data["abi"]),
            bytecode=str(data["bytecode"]),
            source_hash=str(data["source_hash"]),
            compiler=str(data["compiler"]),
        )


def default_contracts_dir() -> Path:
    """``$MERCATO_CONTRACTS``, else ``contracts/`` of the checkout this package runs from."""
    env = os.environ.get("MERCATO_CONTRACTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "contracts"


def default_cache_dir() -> Path:
    env = os.environ.get("MERCATO_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "mercato"
    return base / "vyper"


def compiler_version() -> str:
    return f"vyper-{_version('vyper')}+snekmate-{_version('snekmate')}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def source_hash(source: Path) -> str:
    """Hash of the compiler version, the source's name and every Vyper file beside it."""
    root = source.parent
    h = hashlib.sha256()
    h.update(compiler_version().encode())
    h.update(b"\0" + source.name.encode() + b"\0")
    files = sorted(p for p in root.rglob("*") if p.suffix in (".vy", ".vyi") and p.is_file())
    for path in files:
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def compile_contract(
    source: Path,
    *,
    search_paths: Sequence[Path] = (),
    cache_dir: Path | None = None,
) -> Artifact:
    """ABI and creation bytecode of ``source``, from the cache when its hash is known."""
    source = source.resolve()
    if not source.is_file():
        raise CompileError(f"contract source not found: {source}")
    digest = source_hash(source)
    cache = (cache_dir or default_cache_dir()) / digest[:2] / f"{source.stem}-{digest}.json"
    if cache.is_file():
        try:
            return Artifact.from_json(json.loads(cache.read_text()))
        except (ValueError, KeyError, TypeError):
            cache.unlink(missing_ok=True)  # a torn write: compile again
    artifact = _compile(source, digest, search_paths)
    _write_json(cache, artifact.to_json())
    return artifact


def _compile(source: Path, digest: str, search_paths: Sequence[Path]) -> Artifact:
    try:
        import vyper
        from vyper.compiler.input_bundle import FileInput, FilesystemInputBundle
    except ImportError as exc:  # the `chain` extra is not installed
        raise CompileError(
            "the vyper compiler is not installed (pip install 'mercato[chain]')"
        ) from exc
    # Highest precedence last, as vyper's own command line orders them.
    paths = [Path(p) for p in reversed(sys.path) if p] + [Path(p) for p in search_paths]
    paths.append(source.parent)
    bundle = FilesystemInputBundle(paths)
    try:
        file_input = bundle.load_file(source)
        assert isinstance(file_input, FileInput)
        out = vyper.compile_from_file_input(
            file_input, input_bundle=bundle, output_formats=["abi", "bytecode"]
        )
    except Exception as exc:  # vyper raises many exception types; all mean "did not compile"
        raise CompileError(f"{source.name} did not compile: {exc}") from exc
    return Artifact(
        name=source.stem,
        abi=list(out["abi"]),
        bytecode=str(out["bytecode"]),
        source_hash=digest,
        compiler=compiler_version(),
    )


def load_artifacts(
    names: Iterable[str] = CORE_CONTRACTS,
    *,
    contracts_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Artifact]:
    """Artifacts of ``names``: compiled from ``contracts_dir`` when the sources are there,
    otherwise the ones packaged with Mercato."""
    root = contracts_dir or default_contracts_dir()
    result: dict[str, Artifact] = {}
    for name in names:
        source = root / f"{name}.vy"
        if source.is_file():
            result[name] = compile_contract(source, cache_dir=cache_dir)
            continue
        packaged = _PACKAGED / f"{name}.json"
        if packaged.is_file():
            result[name] = Artifact.from_json(json.loads(packaged.read_text()))
            continue
        raise CompileError(f"no source ({source}) and no packaged artifact for {name}")
    return result


def write_packaged_artifacts(
    names: Iterable[str] = CORE_CONTRACTS, *, contracts_dir: Path | None = None
) -> list[Path]:
    """Refresh ``mercato/chain/artifacts/*.json`` from the sources (a release step)."""
    written = []
    for name, artifact in load_artifacts(names, contracts_dir=contracts_dir).items():
        path = _PACKAGED / f"{name}.json"
        _write_json(path, artifact.to_json())
        written.append(path)
    return written


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


if __name__ == "__main__":  # pragma: no cover - a release helper
    for written in write_packaged_artifacts():
        print(written)
