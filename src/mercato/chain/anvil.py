"""Local devnet: find the anvil binary, run it on 127.0.0.1, wait until it answers, stop it.

anvil is installed by ``scripts/setup.sh`` from npm (``@foundry-rs/anvil-linux-amd64``)
into ``$MERCATO_CACHE/npm/anvil-<version>``. Lookup order: ``$MERCATO_ANVIL``, that
path, then ``anvil`` on ``PATH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.signers.local import LocalAccount

from mercato.chain.errors import AnvilError, AnvilNotFound, PortInUse

ANVIL_VERSION = "1.7.1"
LOCALHOST = "127.0.0.1"
DEVNET_CHAIN_ID = 31337
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_ACCOUNTS = 10


def default_cache_dir() -> Path:
    """``$MERCATO_CACHE``, or ``~/.cache/mercato``."""
    env = os.environ.get("MERCATO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mercato"


def find_anvil(explicit: str | Path | None = None) -> Path:
    """Path of an executable anvil, or :class:`AnvilNotFound` saying how to install one."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    env = os.environ.get("MERCATO_ANVIL")
    if env:
        candidates.append(Path(env))
    candidates.append(
        default_cache_dir() / "npm" / f"anvil-{ANVIL_VERSION}" / "node_modules" / ".bin" / "anvil"
    )
    on_path = shutil.which("anvil")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise AnvilNotFound(
        f"anvil not found (looked at: {looked}). Run scripts/setup.sh, which installs "
        f"@foundry-rs/anvil-linux-amd64@{ANVIL_VERSION} from npm, or set MERCATO_ANVIL."
    )


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """Whether something listens on ``host:port`` (connections left in TIME_WAIT by a
    process that has exited do not count, as they do not stop anvil from binding)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def dev_private_key(index: int, mnemonic: str = DEV_MNEMONIC) -> str:
    """Hex private key of anvil's dev account ``index`` (BIP-44 ``m/44'/60'/0'/0/index``)."""
    seed = seed_from_mnemonic(mnemonic, "")
    return "0x" + bytes(key_from_seed(seed, f"m/44'/60'/0'/0/{index}")).hex()


def dev_account(index: int, mnemonic: str = DEV_MNEMONIC) -> LocalAccount:
    """anvil's dev account ``index``: account 0 is the deployer and faucet."""
    account: LocalAccount = Account.from_key(dev_private_key(index, mnemonic))
    return account


def dev_accounts(count: int = DEFAULT_ACCOUNTS, mnemonic: str = DEV_MNEMONIC) -> list[LocalAccount]:
    seed = seed_from_mnemonic(mnemonic, "")
    return [Account.from_key(key_from_seed(seed, f"m/44'/60'/0'/0/{i}")) for i in range(count)]


@dataclass(frozen=True)
class AnvilConfig:
    port: int | None = None  # None: a free port
    host: str = LOCALHOST
    chain_id: int = DEVNET_CHAIN_ID
    block_time: float | None = None  # None: a block per transaction
    accounts: int = DEFAULT_ACCOUNTS
    balance_eth: int = 10_000
    mnemonic: str = DEV_MNEMONIC
    binary: str | None = None
    log_path: Path | None = None  # None: a temporary file, removed on stop
    startup_timeout: float = 20.0


class Anvil:
    """One anvil process. Use as ``async with Anvil(config) as node: node.rpc_url``."""

    def __init__(self, config: AnvilConfig | None = None) -> None:
        self.config = config or AnvilConfig()
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._tmp_log = False
        self.port: int = 0

    @property
    def rpc_url(self) -> str:
        if self._proc is None:
            raise AnvilError("anvil is not running")
        return f"http://{self.config.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def command(self, binary: Path, port: int) -> list[str]:
        cfg = self.config
        cmd = [
            str(binary),
            "--host", cfg.host,
            "--port", str(port),
            "--chain-id", str(cfg.chain_id),
            "--accounts", str(cfg.accounts),
            "--balance", str(cfg.balance_eth),
            "--mnemonic", cfg.mnemonic,
        ]  # fmt: skip
        if cfg.block_time is not None:
            cmd += ["--block-time", f"{cfg.block_time:g}"]
        return cmd

    async def start(self) -> Anvil:
        if self._proc is not None:
            raise AnvilError("anvil is already running")
        binary = find_anvil(self.config.binary)
        if self.config.port is not None:
            if port_in_use(self.config.port, self.config.host):
                raise PortInUse(
                    f"port {self.config.port} on {self.config.host} is already in use "
                    "(another anvil or `mercato chain up`?); pick another with --port"
                )
            await self._spawn(binary, self.config.port)
            return self
        last: AnvilError | None = None
        for _ in range(3):  # a free port can be taken between the probe and anvil's bind
            try:
                await self._spawn(binary, free_port(self.config.host))
                return self
            except AnvilError as exc:
                last = exc
        assert last is not None
        raise last

    async def _spawn(self, binary: Path, port: int) -> None:
        cfg = self.config
        if cfg.log_path is not None:
            cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_path, self._tmp_log = cfg.log_path, False
        else:
            fd, name = tempfile.mkstemp(prefix="mercato-anvil-", suffix=".log")
            os.close(fd)
            self._log_path, self._tmp_log = Path(name), True
        self._log = self._log_path.open("wb")
        self.port = port
        self._proc = await asyncio.create_subprocess_exec(
            *self.command(binary, port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not anvil directly
        )
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                raise AnvilError(
                    f"anvil exited with status {self._proc.returncode} on start: {self._tail()}"
                )
            if await _answers_rpc(self.config.host, self.port):
                return
            await asyncio.sleep(0.05)
        raise AnvilError(
            f"anvil did not answer on {self.config.host}:{self.port} within "
            f"{self.config.startup_timeout:g}s: {self._tail()}"
        )

    def _tail(self, limit: int = 800) -> str:
        if self._log_path is None:
            return ""
        try:
            data = self._log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace").strip() or "(no output)"

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)

    async def wait(self) -> int:
        """Block until anvil exits on its own; its exit status."""
        if self._proc is None:
            raise AnvilError("anvil is not running")
        return await self._proc.wait()

    async def __aenter__(self) -> Anvil:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


_CHAIN_ID_REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'


async def _answers_rpc(host: str, port: int) -> bool:
    """True when a JSON-RPC ``eth_chainId`` over plain HTTP/1.0 gets a result."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        head = (
            f"POST / HTTP/1.0\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(_CHAIN_ID_REQUEST)}\r\n\r\n"
        ).encode()
        writer.write(head + _CHAIN_ID_REQUEST)
        await writer.drain()
        body = await asyncio.wait_for(reader.read(), 2.0)
        return b'"result"' in body
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
