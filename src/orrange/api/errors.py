"""Error responses: every 4xx/5xx is ``{"error": {"field", "reason", "message"}}``.

``field`` names the offending request field (``price``, ``quantity``, ``symbol``...) or the part
of the request at fault (``body``, ``authorization``, ``path``, ``engine``); ``reason`` is a
stable machine-readable code (``off_tick``, ``missing``, ``invalid_type``, ``not_owner``...);
``message`` explains it to a human.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from orrange.logging import get_logger
from orrange.markets import InvalidValue

__all__ = ["ApiError", "ErrorBody", "ErrorDetail", "exception_handlers"]

_log = get_logger("orrange.api")


class ErrorDetail(msgspec.Struct, frozen=True):
    """What went wrong: the ``field``, a machine-readable ``reason`` and a ``message``."""

    field: str
    reason: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    """The JSON body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An error answered as ``status`` with an :class:`ErrorBody`."""

    def __init__(
        self,
        status: int,
        field: str,
        reason: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(field, reason, message)
        self.headers = headers

    @classmethod
    def from_invalid_value(cls, exc: InvalidValue) -> ApiError:
        """A 400 from a :class:`~orrange.markets.InvalidValue` of the market's conversions."""
        return cls(400, exc.field, str(exc.reason), exc.message)


def _response(
    status: int, field: str, reason: str, message: str, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(ErrorDetail(field, reason, message)), status_code=status, headers=headers
    )


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    return _response(
        exc.status, exc.detail.field, exc.detail.reason, exc.detail.message, exc.headers
    )


_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def _validation_detail(exc: ValidationException) -> ErrorDetail:
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", exc.detail))
        key = str(item.get("key", "body"))
        if m := _MISSING.search(message):
            return ErrorDetail(m.group(1), "missing", message)
        if m := _UNKNOWN.search(message):
            return ErrorDetail(m.group(1), "unknown_field", message)
        if key == "data":
            key = "body"
        if message.startswith("Expected"):
            return ErrorDetail(key, "invalid_type", message)
        if "required" in message.lower():
            return ErrorDetail(key, "missing", message)
        return ErrorDetail(key, "invalid", message)
    detail = str(exc.detail)
    if "malformed" in detail.lower() or "json" in detail.lower():
        return ErrorDetail("body", "malformed_json", detail)
    return ErrorDetail("body", "invalid", detail)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    return Response(ErrorBody(_validation_detail(exc)), status_code=400)


_HTTP_REASONS = {
    400: ("body", "bad_request"),
    401: ("authorization", "unauthorized"),
    403: ("authorization", "forbidden"),
    404: ("path", "not_found"),
    405: ("method", "method_not_allowed"),
    413: ("body", "too_large"),
    415: ("content-type", "unsupported_media_type"),
    429: ("request", "rate_limited"),
}


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    field, reason = _HTTP_REASONS.get(status, ("request", "error"))
    detail = str(exc.detail)
    if status == 400 and "json" in detail.lower():
        field, reason = "body", "malformed_json"
    headers = dict(exc.headers) if exc.headers else None
    return _response(status, field, reason, detail, headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    _log.error("unhandled error", path=request.url.path, exc_info=exc)
    return _response(
        HTTP_500_INTERNAL_SERVER_ERROR, "server", "internal_error", "internal server error"
    )


#: Litestar ``exception_handlers`` mapping producing :class:`ErrorBody` responses.
exception_handlers: dict[type[Exception] | int, Any] = {
    ApiError: _api_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _internal_error,
}
