"""JWT bearer authentication of the API (HS256).

Tokens carry ``sub`` (the user id), ``role`` (``trader`` or ``mediator``), ``iat`` and ``exp``.
The secret comes from the environment only: ``ORRANGE_JWT_SECRET`` (through
:class:`~orrange.settings.Settings`). When it is unset and ``ORRANGE_ENV=dev``, the public
development secret :data:`DEV_JWT_SECRET` is used so that ``orrange up`` and ``orrange token``
work out of the box on a workstation; any other environment refuses to start without a secret.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Literal

import jwt
import msgspec

from orrange.settings import Settings

__all__ = [
    "DEV_JWT_SECRET",
    "ROLES",
    "AuthError",
    "Principal",
    "decode_token",
    "issue_token",
    "resolve_jwt_secret",
]

#: The development secret, used only when ``ORRANGE_ENV=dev`` and no secret is configured.
DEV_JWT_SECRET = "orrange-dev-secret-do-not-use-in-production"
ROLES: tuple[str, ...] = ("trader", "mediator")
_ALGORITHM = "HS256"
_MAX_USER_LEN = 64


class AuthError(Exception):
    """A missing, malformed, expired or forged token.

    Attributes:
        reason: machine-readable code (``missing_token``, ``invalid_token``, ``expired_token``).
        message: human-readable explanation.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller: ``user`` id and ``role``."""

    user: str
    role: str = "trader"


def resolve_jwt_secret(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The HS256 secret: ``settings.jwt_secret``, else :data:`DEV_JWT_SECRET` in dev mode.

    Raises:
        AuthError: no secret is configured and ``ORRANGE_ENV`` is not ``dev`` (reason
            ``no_secret``).
    """
    env = os.environ if env is None else env
    if settings.jwt_secret:
        return settings.jwt_secret
    if env.get("ORRANGE_ENV", "").lower() == "dev":
        return DEV_JWT_SECRET
    raise AuthError(
        "no_secret",
        "ORRANGE_JWT_SECRET is not set (set it, or ORRANGE_ENV=dev for the development secret)",
    )


def _check_user(user: str) -> None:
    if not user or len(user) > _MAX_USER_LEN or not all(c.isalnum() or c in "_-" for c in user):
        raise ValueError(f"user ids are 1-{_MAX_USER_LEN} characters of [A-Za-z0-9_-]: {user!r}")


def issue_token(
    secret: str,
    user: str,
    role: Literal["trader", "mediator"] | str = "trader",
    ttl_s: int = 24 * 3600,
    now: int | None = None,
) -> str:
    """An HS256 token for ``user`` with ``role``, valid ``ttl_s`` seconds from ``now``.

    Raises:
        ValueError: the user id is not 1-64 characters of ``[A-Za-z0-9_-]`` (user ids appear
            in NATS message ids and subjects) or the role is unknown.
    """
    _check_user(user)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}: {role!r}")
    iat = int(time.time()) if now is None else now
    claims = {"sub": user, "role": role, "iat": iat, "exp": iat + ttl_s}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


#: Tokens verified recently: (secret, token) -> (principal, exp in s UTC). A client sends the
#: same token with every request; its signature and claims are checked once, its expiry on
#: every use. Bounded: the oldest entry goes when full.
_VERIFIED: dict[tuple[str, str], tuple[Principal, int]] = {}
_VERIFIED_MAX = 10_000


def decode_token(secret: str, token: str) -> Principal:
    """Verify ``token`` (signature, expiry, claims) and return its :class:`Principal`.

    A token verified before is answered from a bounded cache after checking its expiry again.

    Raises:
        AuthError: ``expired_token`` or ``invalid_token``.
    """
    key = (secret, token)
    hit = _VERIFIED.get(key)
    if hit is not None:
        if hit[1] > time.time():
            return hit[0]
        del _VERIFIED[key]
        raise AuthError("expired_token", "the token has expired")
    principal, exp = _verify(secret, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        del _VERIFIED[next(iter(_VERIFIED))]
    _VERIFIED[key] = (principal, exp)
    return principal


def _verify(secret: str, token: str) -> tuple[Principal, int]:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[_ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("expired_token", "the token has expired") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("invalid_token", f"invalid token: {exc}") from exc
    user = claims.get("sub")
    role = claims.get("role", "trader")
    if not isinstance(user, str) or not isinstance(role, str) or role not in ROLES:
        raise AuthError("invalid_token", "the token's sub or role claim is invalid")
    try:
        _check_user(user)
    except ValueError as exc:
        raise AuthError("invalid_token", str(exc)) from exc
    exp = claims["exp"]
    if not isinstance(exp, int | float):
        raise AuthError("invalid_token", "the token's exp claim is not a number")
    return Principal(user, role), int(exp)
