"""Personal data and secrets out of the logs: every line notifyd writes passes through `Redactor`.

It works on the formatted line (message, arguments and traceback alike), so no logger of a library can
slip a token past it: tokens in query strings and Authorization headers, JWTs, e-mail addresses, card
numbers, `password=`/`"secret": "…"` values and long key-like strings (push keys, FCM tokens, API keys).
"""

from __future__ import annotations

import logging
import re

MASK = "[redacted]"

_JWT = re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)\S+")
_QUERY_SECRET = re.compile(r"(?i)\b(token|key|secret|password|auth|signature)=[^&\s\"']+")
_NAMED_SECRET = re.compile(
    r"(?i)([\"']?\b(?:password|passwd|secret|api_key|token|auth|p256dh|private_key)[\"']?\s*[:=]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;}&]+)"
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# Push keys, FCM tokens, provider API keys: long runs of base64url-ish characters (uuids have dashes
# every few characters and stay readable).
_KEYLIKE = re.compile(r"[A-Za-z0-9_:+/]{40,}={0,2}")


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return "[card]" if _luhn(digits) else match.group()


# Words without which the case-insensitive patterns above cannot match. A pattern runs only where its words
# (casefolded, as the patterns' IGNORECASE also matches e.g. "ſ" or the Kelvin sign) occur: most lines, such as
# a worker's job line with 200 delivery ids, have none, and the seven patterns over 8 kB cost ~3 ms per line.
_QUERY_WORDS = ("token", "key", "secret", "password", "auth", "signature")
_NAMED_WORDS = ("password", "passwd", "secret", "api_key", "token", "auth", "p256dh", "private_key")


def redact(text: str) -> str:
    """`text` with secrets and personal data replaced (idempotent: redacting twice changes nothing more)."""
    folded = text.casefold()
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "bearer" in folded:
        text = _BEARER.sub(rf"\g<1>{MASK}", text)
    if "=" in text and any(word in folded for word in _QUERY_WORDS):
        text = _QUERY_SECRET.sub(rf"\g<1>={MASK}", text)
    if any(word in folded for word in _NAMED_WORDS):
        text = _NAMED_SECRET.sub(rf"\g<1>{MASK}", text)
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    text = _CARD.sub(_card, text)
    return _KEYLIKE.sub(MASK, text)


class Redactor(logging.Formatter):
    """A formatter whose output is redacted: put it on every handler."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
