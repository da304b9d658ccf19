from pathlib import Path

import pytest
from eth_account import Account

from mercato.client.wallet import (
    WalletError,
    create_wallet,
    list_wallets,
    load_wallet,
    wallet_address,
    wallet_path,
)


def test_create_unlock_and_list(tmp_path: Path) -> None:
    path, address = create_wallet("alice", "pw", home=tmp_path, fast_kdf=True)
    assert path == tmp_path / "wallets" / "alice.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert wallet_address("alice", tmp_path) == address
    assert load_wallet("alice", "pw", tmp_path).address == address
    assert list_wallets(tmp_path) == [("alice", address)]


def test_import_a_key_and_refuse_overwrites(tmp_path: Path) -> None:
    account = Account.create()
    _, address = create_wallet("k", "pw", private_key=account.key, home=tmp_path, fast_kdf=True)
    assert address == account.address
    with pytest.raises(WalletError, match="already exists"):
        create_wallet("k", "pw", home=tmp_path, fast_kdf=True)
    with pytest.raises(WalletError, match="not a valid"):
        create_wallet("bad", "pw", private_key="0x1234", home=tmp_path, fast_kdf=True)


def test_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    create_wallet("w", "right", home=tmp_path, fast_kdf=True)
    with pytest.raises(WalletError, match="wrong password"):
        load_wallet("w", "wrong", tmp_path)
    with pytest.raises(WalletError, match="no wallet at"):
        load_wallet("missing", "pw", tmp_path)
    monkeypatch.delenv("MERCATO_WALLET_PASSWORD", raising=False)
    with pytest.raises(WalletError, match="MERCATO_WALLET_PASSWORD"):
        load_wallet("w", None, tmp_path)
    monkeypatch.setenv("MERCATO_WALLET_PASSWORD", "right")
    assert load_wallet("w", None, tmp_path).address == wallet_address("w", tmp_path)
    with pytest.raises(WalletError, match="invalid wallet name"):
        wallet_path("bad name!", tmp_path)
