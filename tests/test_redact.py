"""Secrets and personal data never reach the logs: the redacting formatter on known shapes."""

from __future__ import annotations

import logging
import sys
import uuid

import pytest

from notifyd.core.redact import Redactor, redact
from tests.server import make_token

TOKEN = make_token(uuid.uuid4())
P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"


@pytest.mark.parametrize(
    "line, secret",
    [
        (f'"GET /api/v1/notifications/ws?token={TOKEN} HTTP/1.1" 101', TOKEN),
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        (f"decoded {TOKEN} for you", TOKEN),
        ("delivery to ada.lovelace+work@example.co.uk failed", "ada.lovelace+work@example.co.uk"),
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111 declined", "4111-1111-1111-1111"),
        ('{"password": "hunter2", "user": "x"}', "hunter2"),
        ("login password=hunter2&next=/", "hunter2"),
        (f"subscription keys p256dh={P256DH}", P256DH),
        (f"push key {P256DH} rejected", P256DH),
        ("resend api_key: re_123456789abcdefghijk", "re_123456789abcdefghijk"),
        # Case-insensitive in Unicode's sense: a long s and the Kelvin sign are s and k.
        ("login ſecret=hunter2&next=/", "hunter2"),
        ('{"api_\u212aey": "hunter3"}', "hunter3"),
        ("Authorization: BEARER abc.def", "abc.def"),
    ],
)
def test_a_secret_in_a_line_is_masked(line: str, secret: str) -> None:
    masked = redact(line)
    assert secret not in masked
    assert redact(masked) == masked


@pytest.mark.parametrize(
    "line",
    [
        "delivery 0b3c1e9e-6f0a-4b8e-9d7c-2a1f3e4d5c6b sent in 12 ms",
        "order 1234567812345678 shipped",  # 16 digits that fail the Luhn check: not a card
        "GET /api/v1/notifications?limit=20 200",
        "worker: 3 deliveries claimed, 0 failed",
    ],
)
def test_ordinary_lines_stay_readable(line: str) -> None:
    assert redact(line) == line


def test_a_long_line_without_secrets_is_left_alone() -> None:
    """A worker's job line names 200 delivery ids: none of them looks like a secret."""
    line = f"Job deliver_email[7](delivery_ids={[str(uuid.uuid4()) for _ in range(200)]}) ended with status: Success"
    assert redact(line) == line


def test_the_formatter_redacts_arguments_and_tracebacks() -> None:
    formatter = Redactor("%(message)s")
    try:
        raise ValueError(f"bad address ada@example.com with {TOKEN}")
    except ValueError:
        record = logging.LogRecord(
            "notifyd", logging.ERROR, __file__, 1, "sending to %s", ("bob@example.com",), exc_info=sys.exc_info()
        )
    line = formatter.format(record)
    assert "bob@example.com" not in line and "ada@example.com" not in line and TOKEN not in line
    assert "sending to [email]" in line and "ValueError" in line
