"""Who is calling: a JWT (HS256, `exp` required) or a service key, mapped to a database role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from notifyd.config import Settings

# Services may authenticate with a key made by notify.create_service_key instead of a JWT.
SERVICE_KEY_HEADER = "X-Internal-Service-Key"
SERVICE_NAME_HEADER = "X-Service-Name"
# Longer values cannot be a key or a service name: refused before the database is asked.
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
        try:
            return uuid.UUID(self.sub)
        except ValueError:
            return None

    @property
    def org_id(self) -> str | None:
        org = self.claims.get("org_id")
        return str(org) if org is not None else None


def decode_token(token: str, settings: Settings) -> Caller:
    """Verifies a bearer token; raises AuthError with a message safe to show the caller."""
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
    except jwt.InvalidTokenError:
        raise AuthError("invalid token") from None
    role = claims.get("role", "authenticated")
    if role not in DB_ROLES:
        raise AuthError(f"unknown role {role!r} in token")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid token")
    caller = Caller(role=role, sub=sub, claims=claims, expires_at=float(claims["exp"]))
    if role == "authenticated" and caller.user_id is None:
        raise AuthError("the sub claim of a user token must be a uuid")
    return caller


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header; AuthError for any other form."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be: Bearer <token>")
    return token.strip()


def service_caller(name: str) -> Caller:
    """The caller behind a checked service key: role service, sub = the service's name."""
    return Caller(role="service", sub=name, claims={"sub": name, "role": "service"})
