"""The router of ``mercato up``: ``mercato router serve`` plus a payer for paid
operators (spend authorizations from the router's own wallet).

    python -m mercato.network.router_main --port 8090 --data-dir D --manifest M \
        --payer-keystore K  (password: $MERCATO_ROUTER_PAYER_PASSWORD)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

PASSWORD_ENV = "MERCATO_ROUTER_PAYER_PASSWORD"  # noqa: S105 - a variable's name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mercato-network-router")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--payer-keystore", type=Path, required=True)
    args = parser.parse_args(argv)

    from mercato.chain.manifest import Manifest
    from mercato.cli.common import serve_asgi, setup_logging
    from mercato.cli.router import _banner
    from mercato.client.payments import EscrowRef
    from mercato.client.wallet import load_wallet
    from mercato.config import load_settings
    from mercato.network.router_payer import SpendAuthPayer
    from mercato.router.app import create_app
    from mercato.router.settings import RouterSettings

    settings = load_settings(RouterSettings, None, host=args.host, port=args.port,
                             data_dir=args.data_dir)  # fmt: skip
    settings.discovery.manifest = args.manifest
    setup_logging(settings.log_level)
    manifest = Manifest.load(args.manifest)
    account = load_wallet(args.payer_keystore, os.environ.get(PASSWORD_ENV, ""))
    payer = SpendAuthPayer(account, EscrowRef(manifest.chain_id, manifest.addresses.escrow))
    serve_asgi(create_app(settings, payer=payer, on_ready=_banner), settings.host, settings.port)


if __name__ == "__main__":
    main()
