"""Paying the whole network through every path — API key credits at the router, spend
authorizations, a channel and x402 straight to operators — with the official ``openai``
client and with the SDK, verifying every receipt against the bytes on the wire."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.anvil import dev_account
from mercato.chain.client import ChainClient
from mercato.chain.devnet import set_balance
from mercato.chain.manifest import Manifest
from mercato.client.paying import SpendAuthPayment
from mercato.client.payments import (
    EscrowRef,
    NonceAllocator,
    sign_spend_authorization,
    sign_voucher,
)
from mercato.client.sdk import AsyncClient, Client
from mercato.client.wallet import load_wallet
from mercato.network.local import NetworkInfo
from mercato.payments.wire import SPEND_AUTH_HEADER, VOUCHER_HEADER
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, verify_receipt

pytestmark = [pytest.mark.e2e, pytest.mark.model, pytest.mark.chain]
ASK = [{"role": "user", "content": "Name a colour."}]


def signers(net: NetworkInfo) -> set[str]:
    return {o.address.lower() for o in net.operators}


def check_raw(raw: object, net: NetworkInfo, method: str | None) -> Receipt:
    """A receipt from the official client's raw response, verified from the exact bytes."""
    request, response = raw.http_request, raw.http_response  # type: ignore[attr-defined]
    receipt = Receipt.from_json(response.headers[RECEIPT_HEADER])
    result = verify_receipt(receipt, request.content, response.content)
    assert result.ok, result.reason
    assert receipt.signing_address.lower() in signers(net)
    if method is not None:
        assert receipt.payment is not None and receipt.payment["method"] == method
        assert int(receipt.payment["charged"]) > 0
    return receipt


async def new_payer(net: NetworkInfo, musd: int = 50) -> tuple[LocalAccount, ChainClient]:
    """A fresh payer with tokens and an escrow deposit; its own chain client."""
    account: LocalAccount = Account.create()
    me = ChainClient(Manifest.load(Path(net.manifest)), account=account)
    await set_balance(me.w3, account.address, 10**20)
    await me.for_account(dev_account(0)).token.mint(account.address, 2 * musd * 10**6)
    await me.token.approve(me.escrow.address, 2**255)
    await me.escrow.deposit(musd * 10**6)
    return account, me


def credits(net: NetworkInfo) -> int:
    resp = httpx.get(
        f"{net.router_url}/v1/credits", headers={"Authorization": f"Bearer {net.api_key}"}
    )
    return int(resp.json()["balance"])


def test_official_openai_client_through_the_router(network: NetworkInfo) -> None:
    client = openai.OpenAI(base_url=network.router_url + "/v1", api_key=network.api_key)
    before = credits(network)
    raw = client.chat.completions.with_raw_response.create(
        model=network.model,
        messages=ASK,
        max_tokens=8,
        temperature=0,  # type: ignore[arg-type]
    )
    check_raw(raw, network, "spendauth")  # the router paid the operator
    cost = int(raw.headers["X-Mercato-Cost"])
    assert cost > 0 and credits(network) == before - cost
    assert raw.parse().choices[0].message.content


def test_sdk_through_the_router_json_and_stream(network: NetworkInfo) -> None:
    with Client(
        network.router_url, api_key=network.api_key, expected_signers=sorted(signers(network))
    ) as client:
        _, answer = client.create_with_receipt(
            model=network.model, messages=ASK, max_tokens=8, temperature=0
        )
        assert answer is not None and answer.verified and answer.method == "api_key"
        assert answer.served_by in {o.slug for o in network.operators} and answer.cost
        chunks = list(
            client.chat.completions.create(
                model=network.model,
                messages=ASK,
                max_tokens=8,
                stream=True,  # type: ignore[arg-type]
            )
        )
        last = client.last_answer
        assert last is not None and last.stream and last.verified and last.cost
        assert last.response_id == chunks[0].id


async def test_sdk_pays_operators_directly_every_way(
    network: NetworkInfo, wallet_password: str
) -> None:
    wallet = load_wallet(network.wallet_path, wallet_password)
    manifest = Manifest.load(Path(network.manifest))
    home = os.path.dirname(network.wallet_path)

    async def one(method: str, op_index: int) -> None:
        op = network.operators[op_index]
        client = AsyncClient(
            op.url,
            payment=method,
            wallet=wallet,
            manifest=manifest,  # type: ignore[arg-type]
            home=Path(home),
            expected_signers=[op.address],
        )
        try:
            for stream in (False, True):
                resp = await client.chat.completions.create(
                    model=network.model,
                    messages=ASK,
                    max_tokens=8,
                    stream=stream,  # type: ignore[arg-type]
                )
                if stream:
                    async for _ in resp:  # type: ignore[union-attr]
                        pass
                answer = client.last_answer
                assert answer is not None and answer.verified, answer
                assert answer.payment is not None and answer.payment["method"] == method
                assert answer.cost and answer.cost > 0
            assert await client.attest() == "none"  # a fresh report: no TEE on this machine
        finally:
            await client.close()

    await asyncio.gather(one("spendauth", 0), one("channel", 1), one("x402", 2))


async def test_official_openai_client_with_each_payment_header(network: NetworkInfo) -> None:
    account, me = await new_payer(network)
    manifest = me.manifest
    ref = EscrowRef(manifest.chain_id, manifest.addresses.escrow)
    op = network.operators[0]
    try:
        # spend authorization, signed by hand, in default_headers
        signed = sign_spend_authorization(
            account, ref, op.address, 100_000, NonceAllocator().next()
        )
        client = openai.AsyncOpenAI(
            base_url=op.url + "/v1",
            api_key="unused",
            default_headers={SPEND_AUTH_HEADER: signed.encode()},
        )
        raw = await client.chat.completions.with_raw_response.create(
            model=network.model,
            messages=ASK,
            max_tokens=8,  # type: ignore[arg-type]
        )
        check_raw(raw, network, "spendauth")
        # a channel opened here, one voucher
        channel_id, _ = await me.escrow.open_channel(op.address, 10**6, os.urandom(32))
        voucher = sign_voucher(account, ref, channel_id, 100_000)
        client = openai.AsyncOpenAI(
            base_url=op.url + "/v1",
            api_key="unused",
            default_headers={VOUCHER_HEADER: voucher.encode()},
        )
        raw = await client.chat.completions.with_raw_response.create(
            model=network.model,
            messages=ASK,
            max_tokens=8,  # type: ignore[arg-type]
        )
        check_raw(raw, network, "channel")
        # x402 through the official x402 SDK's httpx client under openai
        from x402 import x402Client
        from x402.http.clients import x402HttpxClient
        from x402.mechanisms.evm.exact import ExactEvmScheme

        x402 = x402Client()
        x402.register(f"eip155:{manifest.chain_id}", ExactEvmScheme(signer=account))  # type: ignore[arg-type]
        x402.set_spend_controls(False)
        async with x402HttpxClient(x402, timeout=60) as http:
            client = openai.AsyncOpenAI(
                base_url=op.url + "/v1", api_key="unused", http_client=http, max_retries=0
            )  # type: ignore[arg-type]
            raw = await client.chat.completions.with_raw_response.create(
                model=network.model,
                messages=ASK,
                max_tokens=8,  # type: ignore[arg-type]
            )
            check_raw(raw, network, "x402")
    finally:
        await me.close()


async def test_operators_settle_on_chain(network: NetworkInfo, wallet_password: str) -> None:
    """What the receipts say was charged reaches the operator's wallet."""
    account, me = await new_payer(network)
    op = network.operators[1]
    before = await me.token.balance_of(op.address)
    client = AsyncClient(op.url, payment="spendauth", wallet=account)
    try:
        total = 0
        for _ in range(2):
            _, answer = await client.create_with_receipt(
                model=network.model, messages=ASK, max_tokens=8
            )
            assert answer is not None and answer.verified and answer.cost
            total += answer.cost
        # the operators wait for spend settlements (settlement_wait_s, 300 s by default):
        # the SDK posts its settlement now (close() would too), the operator settles it
        payer = client.payer
        assert isinstance(payer, SpendAuthPayment)
        await payer.flush()
        assert [s["status_code"] for s in payer.settlements] == [200]
        deadline = time.monotonic() + 30
        while await me.token.balance_of(op.address) < before + total:
            assert time.monotonic() < deadline, "not settled in time"
            await asyncio.sleep(0.5)
        assert await me.escrow.balance_of(account.address) == 50 * 10**6 - total
    finally:
        await client.close()
        await me.close()


def test_cli_wallet_history_and_chat(network: NetworkInfo, wallet_password: str) -> None:
    env = {
        **os.environ,
        "MERCATO_HOME": network.home,
        "MERCATO_WALLET_PASSWORD": wallet_password,
        "COLUMNS": "200",
    }
    mercato = [sys.executable, "-m", "mercato.cli.main"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*mercato, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert network.wallet_address in run("wallet", "balance", "-w", network.wallet)
    out = run("chat", "-m", "Hello", "--max-tokens", "8")
    assert "✓ verified" in out
    out = run(
        "chat",
        "--operator",
        network.operators[2].url,
        "--payment",
        "spendauth",
        "-m",
        "Hello",
        "--max-tokens",
        "8",
    )
    assert "✓ verified" in out
    assert "smollm2" in run("history", "--router", network.router_url, "--api-key", network.api_key)
    bad = subprocess.run(
        [*mercato, "wallet", "deposit", "1", "-w", network.wallet],
        env={**env, "MERCATO_WALLET_PASSWORD": "wrong"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "wrong password" in bad.stderr and "Traceback" not in bad.stderr
    poor = run_fail(mercato, env, "wallet", "deposit", "1000000", "-w", network.wallet)
    assert "insufficient funds" in poor
    assert "deposited 1" in run("wallet", "deposit", "1", "-w", network.wallet)
    assert "requested" in run("wallet", "withdraw", "0.5", "-w", network.wallet)
    op = network.operators[1]
    assert "open with" in run("channel", "open", op.url, "2", "-w", network.wallet)
    status = run("channel", "status", "-w", network.wallet)
    assert op.address in status and "open" in status
    assert "deposit 3 mUSD" in run("channel", "top-up", op.address, "1", "-w", network.wallet)
    assert "closing" in run("channel", "close", op.address, "-w", network.wallet)
    # a fourth operator, registered from its keystore (another model: routing is unchanged)
    data_dir = Path(network.home) / "extra-operator"
    out = run(
        "operator",
        "register",
        "--data-dir",
        str(data_dir),
        "--price-in",
        "5",
        "--price-out",
        "9",
        "--model",
        "other-model",
        "--manifest",
        network.manifest,
        "--endpoint",
        "http://127.0.0.1:9",
        "--devnet-fund",
    )
    assert "registered as" in out
    down = {**env, "MERCATO_HOME": str(Path(network.home) / "nowhere")}
    unreachable = run_fail(
        mercato,
        down,
        "wallet",
        "balance",
        "--manifest",
        network.manifest,
        "--rpc-url",
        "http://127.0.0.1:9",
        "-w",
        network.wallet_path,
    )
    assert "unreachable" in unreachable


def run_fail(mercato: list[str], env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*mercato, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr
