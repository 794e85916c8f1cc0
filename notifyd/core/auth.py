"""Who is calling: a JWT (HS256, `exp` required) or a service key, mapped to a database role."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from notifyd.core.config import Settings

# Services may authenticate with a key made by notify.create_service_key instead of a JWT (the headers are in
# notifyd.core.models). Longer values cannot be a key or a service name: refused before the database is asked.
MAX_SERVICE_KEY_LENGTH = 200
MAX_SERVICE_NAME_LENGTH = 64

DB_ROLES = {
    "authenticated": "notify_authenticated",
    "service": "notify_service",
    "admin": "notify_admin",
}


class AuthError(Exception):
    """The caller could not be authenticated (HTTP 401, WebSocket AUTH_FAILED / 4001)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# The one form of uuid a claim may take, as notify.current_user_id() and notify.current_org_id() read
# it: 8-4-4-4-12 hex digits, either case. uuid.UUID also takes braces, "urn:uuid:" and no hyphens, which
# the database would not read as the same caller.
UUID_FORM = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# exp, nbf and iat are seconds since 1970 up to the end of year 9999: later ones overflow datetime and
# the event loop's timers, and no real token lives that long.
LATEST_TIME = 253402300799
TIME_CLAIMS = ("exp", "nbf", "iat")
MAX_SUB_LENGTH = 255
# The claims go to the database as request.jwt.claims (jsonb); deeper values are refused before.
MAX_CLAIM_DEPTH = 32

BAD_TIME = "the {} claim must be a number of seconds since 1970, at most 253402300799 (the end of year 9999)"
BAD_ROLE = f"the role claim must be one of: {', '.join(sorted(DB_ROLES))} (absent means authenticated)"
BAD_SUB = f"the sub claim must be a string of 1 to {MAX_SUB_LENGTH} characters"
BAD_USER_SUB = "the sub claim of a user token must be a uuid (8-4-4-4-12 hex digits)"
BAD_ORG = "the org_id claim must be a uuid string (8-4-4-4-12 hex digits); only a DBA's token omits it"
BAD_AUD = "the aud claim must be a string or a list of strings"
BAD_VALUES = (
    f"claims must be plain JSON the database can hold: no NaN or infinity, no NUL or lone surrogate "
    f"in a string, at most {MAX_CLAIM_DEPTH} levels deep"
)


def canonical_uuid(value: object) -> uuid.UUID | None:
    """The uuid a claim names, if it is a string in the one accepted form; None otherwise."""
    if isinstance(value, str) and UUID_FORM.fullmatch(value):
        return uuid.UUID(value)
    return None


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the claims that RLS reads, and the role the SQL runs as."""

    role: str  # authenticated | service | admin
    sub: str
    claims: dict[str, Any]
    expires_at: float | None = None

    @property
    def db_role(self) -> str:
        return DB_ROLES[self.role]

    @property
    def user_id(self) -> uuid.UUID | None:
        """The end user, for callers whose sub is a user uuid."""
        return canonical_uuid(self.sub)


def decode_token(token: str, settings: Settings) -> Caller:
    """Verifies a bearer token and every claim notifyd or the database reads; raises AuthError with a
    message safe to show the caller. A claim that is present but malformed is refused, never read as
    absent: an absent org_id means a DBA, so reading a bad one as absent would widen an admin's scope."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            options={"require": ["exp", "sub"], "verify_aud": settings.jwt_audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.PyJWTError:
        raise AuthError("invalid token") from None
    for name in TIME_CLAIMS:
        if name in claims and not _is_time(claims[name]):
            raise AuthError(BAD_TIME.format(name))
    role = claims.get("role", "authenticated")
    if not isinstance(role, str) or role not in DB_ROLES:
        raise AuthError(BAD_ROLE)
    sub = claims["sub"]
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUB_LENGTH:
        raise AuthError(BAD_SUB)
    if role == "authenticated" and canonical_uuid(sub) is None:
        raise AuthError(BAD_USER_SUB)
    if "org_id" in claims and canonical_uuid(claims["org_id"]) is None:
        raise AuthError(BAD_ORG)
    # pyjwt checks aud only when an audience is configured; a malformed one is refused either way.
    if "aud" in claims and not _is_audience(claims["aud"]):
        raise AuthError(BAD_AUD)
    if not _storable(claims, MAX_CLAIM_DEPTH):
        raise AuthError(BAD_VALUES)
    return Caller(role=role, sub=sub, claims=claims, expires_at=float(claims["exp"]))


def _is_time(value: object) -> bool:
    """A NumericDate: a JSON number (not a boolean, not a string of digits), finite, in range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value <= LATEST_TIME  # False for NaN; exact for ints past float's range


def _is_audience(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(a, str) for a in value))


def _storable(value: object, depth: int) -> bool:
    """Whether jsonb takes the value as json.dumps writes it (Python's json reads NaN, 1e400 and
    lone surrogates; PostgreSQL refuses them and NUL in a string)."""
    if isinstance(value, str):
        return "\x00" not in value and _encodable(value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return depth > 0 and all(_storable(item, depth - 1) for item in value)
    if isinstance(value, dict):
        return depth > 0 and all(_storable(k, depth) and _storable(v, depth - 1) for k, v in value.items())
    return True  # int, bool, None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header; AuthError for any other form."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be: Bearer <token>")
    return token.strip()


def service_caller(name: str) -> Caller:
    """The caller behind a checked service key: role service, sub = the service's name."""
    return Caller(role="service", sub=name, claims={"sub": name, "role": "service"})
