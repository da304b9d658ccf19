"""Entry point of the ``mercato`` command: registers one sub-app per noun."""

from __future__ import annotations

import typer

from mercato.cli import chain, channel, chat, history, operator, router, up, verify, wallet

app = typer.Typer(
    name="mercato",
    help="Private, verifiable, pay-per-token LLM inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(operator.app, name="operator")
app.add_typer(chain.app, name="chain")
app.add_typer(router.app, name="router")
app.command("verify")(verify.verify)
app.add_typer(wallet.app, name="wallet")
app.add_typer(channel.app, name="channel")
app.command("history")(history.history)
app.command("up")(up.up)
app.command("chat")(chat.chat)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
