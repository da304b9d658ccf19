"""One domain error tree with stable machine codes.

Raised anywhere below the HTTP edge; translated once, at the edge, into OpenAI's
``{"error": {"message", "type", "param", "code"}}`` body with ``status``.
"""

from __future__ import annotations

from typing import Any


class MercatoError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(MercatoError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class NotFound(MercatoError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthenticationFailed(MercatoError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PaymentRequired(MercatoError):
    status = 402
    type = "payment_required"
    code = "payment_required"


class Overloaded(MercatoError):
    """The server is at capacity; the client should retry after ``retry_after`` seconds."""

    status = 429
    type = "rate_limit_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1, status: int | None = None) -> None:
        super().__init__(message, status=status, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class UpstreamError(MercatoError):
    """The model backend failed; ``status`` mirrors the upstream's where that is meaningful."""

    status = 502
    type = "server_error"
    code = "upstream_error"


class Unavailable(MercatoError):
    status = 503
    type = "server_error"
    code = "unavailable"


class ConfigError(MercatoError):
    """Bad settings or environment, found at start-up (never on a request)."""

    code = "config_error"
