"""The operator's ASGI app: built from settings, everything created in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from mercato.attestation import QuoteProvider, make_quote_provider
from mercato.crypto.keystore import SigningKeys, load_or_create, resolve_password
from mercato.errors import InvalidRequest, MercatoError, NotFound, UpstreamError
from mercato.operator.backends.base import Backend
from mercato.operator.backends.factory import make_backend
from mercato.operator.metrics import OperatorMetrics
from mercato.operator.receipts import ReceiptSigner, ReceiptStore
from mercato.operator.routes import json_response, router
from mercato.operator.settings import OperatorSettings
from mercato.operator.state import OperatorState
from mercato.storage.db import make_engine, migrate

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as OpenAI's ``{"error": {...}}`` body with the right status."""

    def answer(err: MercatoError) -> Response:
        resp = json_response(err.to_body(), err.status)
        resp.headers.update(err.headers)
        return resp

    @app.exception_handler(MercatoError)
    async def _domain(_: Request, exc: MercatoError) -> Response:
        return answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        return answer(InvalidRequest(str(first["msg"]), param=param, code="invalid_parameter"))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return answer(NotFound(f"no such endpoint: {exc.detail}", code="unknown_endpoint"))
        return answer(InvalidRequest(str(exc.detail), status=exc.status_code, code="http_error"))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return answer(UpstreamError("internal error", status=500, code="internal_error"))


def open_keystore(settings: OperatorSettings) -> SigningKeys:
    """The operator's signing keys, created on first start. Raises KeystoreError."""
    directory = settings.resolved_keystore_dir()
    secret = settings.signing.password
    password = resolve_password(
        directory, secret.get_secret_value() if secret else None, settings.signing.password_file
    )
    return load_or_create(directory, password, fast_kdf=settings.signing.fast_kdf)


def create_app(
    settings: OperatorSettings,
    *,
    backend: Backend | None = None,
    attestation: QuoteProvider | None = None,
    on_ready: Callable[[OperatorState], None] | None = None,
    keys: SigningKeys | None = None,
) -> FastAPI:
    """``backend`` and ``attestation`` default to what the settings name; ``on_ready``
    runs once everything has started."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        signing_keys = keys or open_keystore(settings)
        engine = make_engine(settings.resolved_database_url())
        migrate(engine)
        receipts = ReceiptStore(
            engine,
            retention_s=settings.receipts.retention_days * 86400,
            flush_interval_s=settings.receipts.flush_interval_s,
        )
        the_backend = backend or make_backend(settings.backend)
        quotes = attestation or make_quote_provider(
            settings.attestation.provider, settings.attestation.socket
        )
        async with AsyncExitStack() as stack:  # stops what started, in reverse, on any error
            stack.callback(engine.dispose)
            stack.push_async_callback(quotes.close)
            await the_backend.start()
            stack.push_async_callback(the_backend.close)
            await receipts.start()
            stack.push_async_callback(receipts.close)
            paid = None
            if settings.payments.mode == "paid":
                from mercato.operator.paid import paid_mode

                paid = await stack.enter_async_context(
                    paid_mode(settings.payments, signing_keys, engine, the_backend.models())
                )
            app.state.operator = OperatorState(
                settings=settings,
                backend=the_backend,
                signer=ReceiptSigner(signing_keys),
                receipts=receipts,
                attestation=quotes,
                metrics=OperatorMetrics(),
                engine=engine,
                payments=paid.service if paid else None,
                prices=paid.prices if paid else {},
            )
            log.info("operator ready: signing address %s", signing_keys.ecdsa.address)
            if on_ready is not None:
                on_ready(app.state.operator)
            yield

    app = FastAPI(title="Mercato operator", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.include_router(router)
    return app
