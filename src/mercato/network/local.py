"""The whole network on this machine, the way ``mercato up`` starts it:

1. anvil and Mercato's contracts (manifest at ``<home>/devnet/manifest.json``);
2. three operators serving the default model in paid mode, each registered on-chain
   with its own price (``<home>/operators/<slug>``);
3. the router, discovering the operators from the chain and paying them with spend
   authorizations from its own escrow deposit (``<home>/router``);
4. a demo wallet (keystore ``<home>/wallets/demo.json``) with tokens and an escrow
   deposit, and an API key with credits;
5. ``<home>/network.json``: what was started, for ``mercato chat`` and tests.

Use as ``async with LocalNetwork(config) as net: ...``; leaving stops everything.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.anvil import Anvil, AnvilConfig, dev_account, free_port
from mercato.chain.client import ChainClient
from mercato.chain.deploy import MUSD, DeployConfig, DevnetFunding, deploy_devnet
from mercato.chain.devnet import set_balance
from mercato.chain.manifest import Manifest
from mercato.client.wallet import create_wallet
from mercato.crypto.keystore import load_or_create, resolve_password
from mercato.network.procs import Child, NetworkError, spawn, wait_healthy
from mercato.network.router_main import PASSWORD_ENV as ROUTER_PASSWORD_ENV
from mercato.operator.register import Offer, register_operator

DEFAULT_MODEL = "smollm2-135m-instruct"
# (slug, input, output) in token base units per 1M tokens: three competing prices.
DEFAULT_OPERATORS: tuple[tuple[str, int, int], ...] = (
    ("alpha", 1 * MUSD, 4 * MUSD),
    ("beta", 2 * MUSD, 8 * MUSD),
    ("gamma", 3 * MUSD, 12 * MUSD),
)
INFO_FILE = "network.json"


@dataclass(frozen=True)
class NetworkConfig:
    home: Path
    anvil_port: int | None = 8545  # None: any free port
    router_port: int | None = 8090
    operator_ports: tuple[int, ...] | None = (8101, 8102, 8103)
    operators: tuple[tuple[str, int, int], ...] = DEFAULT_OPERATORS
    model: str = DEFAULT_MODEL
    wallet_name: str = "demo"
    wallet_password: str | None = None  # None: generated, kept in <home>/wallets/demo.password
    wallet_tokens: int = 1_000 * MUSD
    wallet_deposit: int = 100 * MUSD
    api_key_credits: int = 100 * MUSD
    router_deposit: int = 10_000 * MUSD
    settle_interval_s: float = 2.0
    n_threads: int | None = None  # llama.cpp threads per operator (None: its default)
    fast_kdf: bool = True  # throw-away devnet keys
    deploy: DeployConfig = field(
        default_factory=lambda: DeployConfig(withdraw_delay=120, challenge_period=120)
    )


@dataclass
class OperatorInfo:
    slug: str
    url: str
    address: str
    price_in_per_m: int
    price_out_per_m: int
    log: str


@dataclass
class NetworkInfo:
    home: str
    rpc_url: str
    chain_id: int
    manifest: str
    router_url: str
    admin_token: str
    api_key: str
    model: str
    wallet: str
    wallet_path: str
    wallet_address: str
    wallet_password_file: str
    router_payer: str
    operators: list[OperatorInfo]

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh, indent=2)

    @classmethod
    def load(cls, path: Path) -> NetworkInfo:
        doc = json.loads(path.read_text())
        doc["operators"] = [OperatorInfo(**o) for o in doc["operators"]]
        return cls(**doc)


def _port(ports: tuple[int, ...] | None, i: int) -> int:
    return ports[i] if ports and i < len(ports) else free_port()


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)


class LocalNetwork:
    def __init__(self, config: NetworkConfig, *, progress: Any = None) -> None:
        self.config = config
        self.home = config.home.resolve()
        self.anvil: Anvil | None = None
        self.children: list[Child] = []
        self.info: NetworkInfo | None = None
        self._progress = progress or (lambda msg: None)

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        for child in reversed(self.children):  # router first, then operators
            await asyncio.to_thread(child.stop)
        self.children.clear()
        if self.anvil is not None:
            await self.anvil.stop()
            self.anvil = None

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    # -- start ----------------------------------------------------------------------------

    def _reset_state(self) -> None:
        """Each start is a fresh chain: drop what referred to the previous one (router
        database, operators' payment databases, remembered channels). Operator keys
        and wallets stay."""
        home = self.home
        for path in (home / "router", home / "channels", home / INFO_FILE):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for db in (home / "operators").glob("*/operator.db*"):
            db.unlink()

    async def start(self) -> NetworkInfo:
        cfg, home = self.config, self.home
        home.mkdir(parents=True, exist_ok=True)
        self._reset_state()
        self._progress("starting anvil and deploying the contracts")
        manifest_path = home / "devnet" / "manifest.json"
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        self.anvil = Anvil(AnvilConfig(port=cfg.anvil_port, log_path=home / "devnet" / "anvil.log"))
        await self.anvil.start()
        manifest = await deploy_devnet(
            self.anvil.rpc_url,
            config=cfg.deploy,
            funding=DevnetFunding(accounts=0),
            manifest_path=manifest_path,
        )
        async with ChainClient(manifest) as chain:
            faucet = chain.for_account(dev_account(0))
            operators = await self._operators(chain, faucet, manifest, manifest_path)
            router_account, router_keystore, router_password = await self._router_wallet(
                chain, faucet
            )
            wallet = await self._demo_wallet(chain, faucet)
        router_port = cfg.router_port or free_port()
        admin_token = secrets.token_urlsafe(24)
        router = self._spawn_router(
            router_port, manifest_path, router_keystore, router_password, admin_token
        )
        self._progress("waiting for the operators and the router")
        await asyncio.gather(*(wait_healthy(c) for c in self.children))
        await self._await_discovery(router.url, admin_token, len(operators))
        api_key = await self._api_key(router.url, admin_token)
        wallet_path, address, password_file = wallet
        self.info = NetworkInfo(
            home=str(home),
            rpc_url=manifest.rpc_url,
            chain_id=manifest.chain_id,
            manifest=str(manifest_path),
            router_url=router.url,
            admin_token=admin_token,
            api_key=api_key,
            model=cfg.model,
            wallet=cfg.wallet_name,
            wallet_path=str(wallet_path),
            wallet_address=address,
            wallet_password_file=str(password_file),
            router_payer=router_account.address,
            operators=operators,
        )
        self.info.save(home / INFO_FILE)
        return self.info

    async def _operators(
        self, chain: ChainClient, faucet: ChainClient, manifest: Manifest, manifest_path: Path
    ) -> list[OperatorInfo]:
        cfg = self.config
        out = []
        stake = await chain.registry.min_stake()
        for i, (slug, price_in, price_out) in enumerate(cfg.operators):
            port = _port(cfg.operator_ports, i)
            data_dir = self.home / "operators" / slug
            keys_dir = data_dir / "keys"
            self._progress(f"registering operator {slug} (in={price_in} out={price_out} per 1M)")
            keys = load_or_create(
                keys_dir, resolve_password(keys_dir, None, None), fast_kdf=cfg.fast_kdf
            )
            account: LocalAccount = Account.from_key(keys.ecdsa.secret)
            await set_balance(chain.w3, account.address, 10**20)
            if await chain.token.balance_of(account.address) < stake:
                await faucet.token.mint(account.address, stake)
            url = f"http://127.0.0.1:{port}"
            await register_operator(
                chain.for_account(account),
                slug=slug,
                endpoint=url,
                offers=[Offer(cfg.model, price_in, price_out)],
            )
            env = {
                "MERCATO_OPERATOR__PAYMENTS__MODE": "paid",
                "MERCATO_OPERATOR__PAYMENTS__MANIFEST": str(manifest_path),
                "MERCATO_OPERATOR__PAYMENTS__SETTLE_INTERVAL_S": str(cfg.settle_interval_s),
                "MERCATO_OPERATOR__SIGNING__FAST_KDF": "true" if cfg.fast_kdf else "false",
                "MERCATO_OPERATOR__LOG_LEVEL": "warning",
            }
            if cfg.n_threads:
                env["MERCATO_OPERATOR__BACKEND__LLAMA_CPP__N_THREADS"] = str(cfg.n_threads)
            argv = [sys.executable, "-m", "mercato.cli.main", "operator", "serve"]
            argv += ["--port", str(port), "--data-dir", str(data_dir)]
            log = self.home / "logs" / f"operator-{slug}.log"
            self.children.append(spawn(f"operator {slug}", argv, env, log, url))
            out.append(OperatorInfo(slug, url, account.address, price_in, price_out, str(log)))
        return out

    async def _router_wallet(
        self, chain: ChainClient, faucet: ChainClient
    ) -> tuple[LocalAccount, Path, str]:
        """The router's own paying wallet: gas, tokens, an escrow deposit."""
        cfg = self.config
        password = secrets.token_urlsafe(24)
        account: LocalAccount = Account.create()
        path = self.home / "router" / "payer.json"
        create_wallet(path, password, private_key=account.key, fast_kdf=cfg.fast_kdf,
                      overwrite=True)  # fmt: skip
        await self._fund(chain, faucet, account, cfg.router_deposit, cfg.router_deposit)
        return account, path, password

    async def _demo_wallet(self, chain: ChainClient, faucet: ChainClient) -> tuple[Path, str, Path]:
        cfg = self.config
        self._progress(f"creating and funding the demo wallet {cfg.wallet_name!r}")
        password = cfg.wallet_password or secrets.token_urlsafe(12)
        account: LocalAccount = Account.create()
        path = self.home / "wallets" / f"{cfg.wallet_name}.json"
        create_wallet(path, password, private_key=account.key, fast_kdf=cfg.fast_kdf,
                      overwrite=True)  # fmt: skip
        password_file = path.with_suffix(".password")
        _write_secret(password_file, password)
        await self._fund(chain, faucet, account, cfg.wallet_tokens, cfg.wallet_deposit)
        return path, str(account.address), password_file

    async def _fund(
        self, chain: ChainClient, faucet: ChainClient, account: LocalAccount, tokens: int,
        deposit: int,
    ) -> None:  # fmt: skip
        await set_balance(chain.w3, account.address, 10**20)
        await faucet.token.mint(account.address, tokens + deposit)
        me = chain.for_account(account)
        await me.token.approve(chain.escrow.address, 2**255)
        if deposit:
            await me.escrow.deposit(deposit)

    def _spawn_router(
        self, port: int, manifest_path: Path, keystore: Path, password: str, admin: str
    ) -> Child:
        env = {
            ROUTER_PASSWORD_ENV: password,
            "MERCATO_ROUTER__BILLING__ADMIN_TOKEN": admin,
            "MERCATO_ROUTER__DISCOVERY__INTERVAL_S": "2",
            "MERCATO_ROUTER__DISCOVERY__PROBE_INTERVAL_S": "5",
            "MERCATO_ROUTER__LOG_LEVEL": "warning",
        }
        argv = [sys.executable, "-m", "mercato.network.router_main", "--port", str(port),
                "--data-dir", str(self.home / "router"), "--manifest", str(manifest_path),
                "--payer-keystore", str(keystore)]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        child = spawn("router", argv, env, self.home / "logs" / "router.log", url)
        self.children.append(child)
        return child

    async def _await_discovery(self, router: str, admin: str, count: int) -> None:
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(timeout=5, headers=headers) as http:
            for _ in range(240):
                resp = await http.get(router + "/admin/operators")
                if resp.status_code == 200:
                    offers = [o for o in resp.json()["data"] if o["kind"] == "operator"]
                    healthy = [o for o in offers if o["scores"]["healthy"]]
                    if len(offers) >= count and len(healthy) >= count:
                        return
                await asyncio.sleep(0.5)
        raise NetworkError(f"the router did not discover {count} healthy operators in time")

    async def _api_key(self, router: str, admin: str) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(
                router + "/admin/keys",
                json={"name": "demo", "credits": self.config.api_key_credits},
                headers={"Authorization": f"Bearer {admin}"},
            )
        if resp.status_code != 201:
            raise NetworkError(f"cannot create the demo API key: {resp.status_code} {resp.text}")
        return str(resp.json()["key"])
