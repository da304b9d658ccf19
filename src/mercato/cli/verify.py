"""``mercato verify``: check an operator's signed answer from the raw bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.common import console, fail, friendly_errors
from mercato.client.verify import VerifyError, verify_answer
from mercato.protocol.receipts import Receipt


@friendly_errors
def verify(
    request: Annotated[Path, typer.Option(help="The exact request body bytes that were sent.")],
    response: Annotated[
        Path,
        typer.Option(help="The exact response bytes received (JSON body or whole SSE stream)."),
    ],
    receipt: Annotated[
        Path | None,
        typer.Option(help="Receipt JSON (the X-Mercato-Receipt header value)."),
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="Operator base URL, to fetch the signature or attestation.")
    ] = None,
    expect_address: Annotated[
        str | None, typer.Option(help="Fail unless this address signed (e.g. the on-chain signer).")
    ] = None,
    attest: Annotated[
        bool, typer.Option(help="Also fetch a fresh attestation with a random nonce.")
    ] = False,
    require_tee: Annotated[
        bool, typer.Option(help="With --attest: fail when the operator has no TEE.")
    ] = False,
) -> None:
    """Recompute both hashes, recover the signer, check both signatures (and attestation)."""
    given = Receipt.from_json(receipt.read_bytes()) if receipt else None
    try:
        outcome = asyncio.run(
            verify_answer(
                request.read_bytes(),
                response.read_bytes(),
                receipt=given,
                operator=operator,
                expected_address=expect_address,
                attest=attest,
            )
        )
    except VerifyError as exc:
        fail(str(exc), 2)
    v = outcome.verification
    for note in outcome.notes:
        console.print(f"[dim]{note}[/]")
    console.print(f"request sha256   {v.request_sha256}")
    console.print(f"response sha256  {v.response_sha256}")
    console.print(f"response id      {outcome.receipt.id}")
    if not v.ok:
        fail(f"verification failed: {v.reason}" + (f" (recovered {v.signer})" if v.signer else ""))
    console.print(f"signer           {v.signer}  [green]ECDSA ok[/], [green]Ed25519 ok[/]")
    if outcome.attestation == "none" and require_tee:
        fail("operator has no hardware attestation (--require-tee)")
    if outcome.attestation is not None:
        console.print(f"attestation      {outcome.attestation}")
    console.print("[bold green]verified[/]")
