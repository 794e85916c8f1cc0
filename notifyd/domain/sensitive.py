"""Sensitive fields, never shown in clear: the top-level keys of `data` and `template_vars` a template marks.

Every channel shows MASK in their place (in-app, push, e-mail, digests, exports, WebSocket events), and
the real values are kept only encrypted under NOTIFICATION_ENCRYPTION_KEY, in `notifications.sealed`;
the recipient reads them with GET /api/v1/notifications/{id}/sensitive. REST seals before it inserts,
so the values never reach the database in clear. A template notification sent from SQL carries them
in clear only until the worker renders it (held, so shown to no one, until then).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from notifyd.core.crypto import SecretBox, SecretsError

MASK = "••••"
NO_KEY = "sensitive fields need NOTIFICATION_ENCRYPTION_KEY, which is not set"


@dataclass(frozen=True)
class Masked:
    data: dict[str, Any]
    template_vars: dict[str, Any]
    real: dict[str, dict[str, Any]] | None  # None: the notification gave none of the sensitive fields


def marked(templates: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """The fields any language of a template marks: a field is no less sensitive in another language."""
    return frozenset(name for template in templates for name in template.get("sensitive_fields") or ())


def mask(fields: frozenset[str], data: Mapping[str, Any], template_vars: Mapping[str, Any]) -> Masked:
    """Both objects with MASK in place of the fields, and the real values taken out."""
    real = {
        "data": {k: v for k, v in data.items() if k in fields},
        "template_vars": {k: v for k, v in template_vars.items() if k in fields},
    }
    return Masked(
        data={k: MASK if k in fields else v for k, v in data.items()},
        template_vars={k: MASK if k in fields else v for k, v in template_vars.items()},
        real=real if real["data"] or real["template_vars"] else None,
    )


def seal(secrets: SecretBox | None, real: Mapping[str, Any]) -> str:
    """The ciphertext kept in notifications.sealed; SecretsError without a key."""
    if secrets is None:
        raise SecretsError(NO_KEY)
    return secrets.encrypt(json.dumps(real, separators=(",", ":")))


def reveal(secrets: SecretBox | None, sealed: str) -> dict[str, dict[str, Any]]:
    """The real values: {"data": {...}, "template_vars": {...}}; SecretsError without the key that sealed them."""
    if secrets is None:
        raise SecretsError(NO_KEY)
    revealed: dict[str, dict[str, Any]] = json.loads(secrets.decrypt(sealed))
    return revealed
