"""Typed wrapper of PaymentToken (mUSD): ERC-20, EIP-2612 permit, EIP-3009, minters."""

from __future__ import annotations

from mercato.chain.contract import ContractBinding, Eip712Domain, TxResult, read_eip712_domain
from mercato.chain.events import TOKEN_EVENTS
from mercato.protocol.eip712 import split_signature


def _vrs(signature: bytes) -> tuple[int, bytes, bytes]:
    v, r, s = split_signature(signature)
    return v, r.to_bytes(32, "big"), s.to_bytes(32, "big")


class PaymentToken(ContractBinding):
    EVENTS = TOKEN_EVENTS

    # --- views -----------------------------------------------------------------------

    async def name(self) -> str:
        return str(await self.call("name"))

    async def symbol(self) -> str:
        return str(await self.call("symbol"))

    async def decimals(self) -> int:
        return int(await self.call("decimals"))

    async def version(self) -> str:
        return str(await self.call("version"))

    async def total_supply(self) -> int:
        return int(await self.call("totalSupply"))

    async def balance_of(self, owner: str) -> int:
        return int(await self.call("balanceOf", owner))

    async def allowance(self, owner: str, spender: str) -> int:
        return int(await self.call("allowance", owner, spender))

    async def nonces(self, owner: str) -> int:
        """EIP-2612 permit nonce of ``owner``."""
        return int(await self.call("nonces", owner))

    async def domain_separator(self) -> bytes:
        return bytes(await self.call("DOMAIN_SEPARATOR"))

    async def eip712_domain(self) -> Eip712Domain:
        return await read_eip712_domain(self)

    async def owner(self) -> str:
        return str(await self.call("owner"))

    async def is_minter(self, account: str) -> bool:
        return bool(await self.call("is_minter", account))

    async def authorization_state(self, authorizer: str, nonce: bytes) -> bool:
        """EIP-3009: whether ``nonce`` of ``authorizer`` is used or canceled."""
        return bool(await self.call("authorizationState", authorizer, nonce))

    # --- ERC-20 ----------------------------------------------------------------------

    async def transfer(self, to: str, amount: int) -> TxResult:
        return await self.send("transfer", to, amount)

    async def approve(self, spender: str, amount: int) -> TxResult:
        return await self.send("approve", spender, amount)

    async def transfer_from(self, owner: str, to: str, amount: int) -> TxResult:
        return await self.send("transferFrom", owner, to, amount)

    async def burn(self, amount: int) -> TxResult:
        return await self.send("burn", amount)

    async def burn_from(self, owner: str, amount: int) -> TxResult:
        return await self.send("burn_from", owner, amount)

    # --- minting and ownership -------------------------------------------------------

    async def mint(self, to: str, amount: int) -> TxResult:
        """Only a minter (the devnet faucet) may mint."""
        return await self.send("mint", to, amount)

    async def set_minter(self, minter: str, status: bool) -> TxResult:
        return await self.send("set_minter", minter, status)

    async def transfer_ownership(self, new_owner: str) -> TxResult:
        return await self.send("transfer_ownership", new_owner)

    async def renounce_ownership(self) -> TxResult:
        return await self.send("renounce_ownership")

    # --- signatures (EIP-2612, EIP-3009); ``signature`` is 65 bytes r || s || v --------

    async def permit(
        self, owner: str, spender: str, amount: int, deadline: int, signature: bytes
    ) -> TxResult:
        v, r, s = _vrs(signature)
        return await self.send("permit", owner, spender, amount, deadline, v, r, s)

    async def transfer_with_authorization(
        self,
        from_: str,
        to: str,
        amount: int,
        valid_after: int,
        valid_before: int,
        nonce: bytes,
        signature: bytes,
    ) -> TxResult:
        v, r, s = _vrs(signature)
        return await self.send(
            "transferWithAuthorization", from_, to, amount, valid_after, valid_before, nonce,
            v, r, s,
        )  # fmt: skip

    async def receive_with_authorization(
        self,
        from_: str,
        to: str,
        amount: int,
        valid_after: int,
        valid_before: int,
        nonce: bytes,
        signature: bytes,
    ) -> TxResult:
        v, r, s = _vrs(signature)
        return await self.send(
            "receiveWithAuthorization", from_, to, amount, valid_after, valid_before, nonce,
            v, r, s,
        )  # fmt: skip

    async def cancel_authorization(
        self, authorizer: str, nonce: bytes, signature: bytes
    ) -> TxResult:
        v, r, s = _vrs(signature)
        return await self.send("cancelAuthorization", authorizer, nonce, v, r, s)
