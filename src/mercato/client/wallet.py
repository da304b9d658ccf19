"""A user's wallet: one secp256k1 key in an Ethereum keystore v3 file (scrypt +
AES-128-CTR, written and read by ``eth_account``) at
``$MERCATO_HOME/wallets/<name>.json``, so any Ethereum wallet can import it.

The password comes from the caller (the CLI prompts) or ``MERCATO_WALLET_PASSWORD``.
Nothing here logs or returns the password or the key.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.manifest import mercato_home
from mercato.errors import MercatoError

PASSWORD_ENV = "MERCATO_WALLET_PASSWORD"  # noqa: S105 - the variable's name, not a secret
DEFAULT_WALLET = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class WalletError(MercatoError):
    status = 400
    type = "wallet_error"
    code = "wallet_error"


def wallets_dir(home: Path | None = None) -> Path:
    return (home or mercato_home()) / "wallets"


def wallet_path(name_or_path: str | Path, home: Path | None = None) -> Path:
    """A wallet's file: a path as given (when it names a file) or ``<home>/wallets/<name>.json``."""
    text = str(name_or_path)
    if text.endswith(".json") or os.sep in text:
        return Path(text)
    if not _NAME.fullmatch(text):
        raise WalletError(f"invalid wallet name {text!r} (letters, digits, '.', '_', '-')")
    return wallets_dir(home) / f"{text}.json"


def _write_private(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)
    os.replace(tmp, path)


def create_wallet(
    name: str | Path,
    password: str,
    *,
    private_key: str | bytes | None = None,
    home: Path | None = None,
    fast_kdf: bool = False,
    overwrite: bool = False,
) -> tuple[Path, str]:
    """Write a new wallet (a fresh key, or ``private_key`` to import); its path and address.

    ``fast_kdf`` (scrypt n=2**14 instead of 2**18) is for tests and throw-away devnets.
    """
    path = wallet_path(name, home)
    if path.exists() and not overwrite:
        raise WalletError(f"wallet {path} already exists")
    if not password:
        raise WalletError("a wallet needs a non-empty password")
    try:
        account: LocalAccount = (
            Account.from_key(private_key) if private_key is not None else Account.create()
        )
    except (ValueError, TypeError) as exc:
        raise WalletError("not a valid secp256k1 private key (64 hex digits)") from exc
    doc = Account.encrypt(
        account.key, password, kdf="scrypt", iterations=2**14 if fast_kdf else 2**18
    )
    _write_private(path, json.dumps(doc))
    return path, str(account.address)


def _read(path: Path) -> dict[str, object]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise WalletError(f"no wallet at {path}; create one with `mercato wallet create`") from None
    except (OSError, ValueError) as exc:
        raise WalletError(f"cannot read wallet {path}: {exc}") from exc
    if not isinstance(doc, dict) or ("crypto" not in doc and "Crypto" not in doc):
        raise WalletError(f"{path} is not an Ethereum keystore file")
    return doc


def wallet_address(name_or_path: str | Path, home: Path | None = None) -> str:
    """The wallet's address, read without the password."""
    path = wallet_path(name_or_path, home)
    address = _read(path).get("address")
    if not isinstance(address, str):
        raise WalletError(f"{path} does not record its address")
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address("0x" + address.removeprefix("0x")))


def load_wallet(
    name_or_path: str | Path, password: str | None = None, home: Path | None = None
) -> LocalAccount:
    """Unlock a wallet with ``password`` (default: ``$MERCATO_WALLET_PASSWORD``)."""
    path = wallet_path(name_or_path, home)
    doc = _read(path)
    password = password if password is not None else os.environ.get(PASSWORD_ENV)
    if password is None:
        raise WalletError(f"no password for wallet {path} (set {PASSWORD_ENV})")
    try:
        key = Account.decrypt(doc, password)
    except ValueError as exc:
        raise WalletError(f"wrong password for wallet {path}") from exc
    account: LocalAccount = Account.from_key(key)
    return account


def list_wallets(home: Path | None = None) -> list[tuple[str, str]]:
    """``(name, address)`` of every wallet under ``<home>/wallets``."""
    out = []
    for path in sorted(wallets_dir(home).glob("*.json")):
        try:
            out.append((path.stem, wallet_address(path)))
        except WalletError:
            continue
    return out
