"""SMTP, the second e-mail provider (aiosmtplib): the same rendered e-mail as Resend, as a MIME message.

The message is built from Resend's parameters (notifyd.domain.email.send_params), so both providers send the
same subject, sender, headers (List-Unsubscribe, List-Unsubscribe-Post) and HTML and text parts. SMTP has no
idempotency key: the Message-ID is the delivery's, so that a repeat (a worker killed after the server
accepted it) is recognisable as the same message.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import aiosmtplib

from notifyd.core.config import Settings
from notifyd.domain.deliveries import Failed, Outcome, Retry, Sent

PROVIDER = "smtp"
TIMED_OUT = "the SMTP server did not answer within {seconds:g} s"
# An SMTP reply code's class: 4xx is the server's passing trouble, 5xx a refusal of this message for good.
TRANSIENT_CLASS = 4


def message(params: Mapping[str, Any], delivery_id: uuid.UUID) -> EmailMessage:
    """The MIME message of Resend's parameters of one e-mail (their header values are single lines already)."""
    mime = EmailMessage()
    mime["From"] = params["from"]
    mime["To"] = ", ".join(params["to"])
    mime["Subject"] = params["subject"]
    domain = parseaddr(params["from"])[1].rpartition("@")[2] or "notifyd"
    mime["Message-ID"] = f"<{delivery_id}@{domain}>"
    for name, value in params["headers"].items():
        mime[name] = value
    mime.set_content(params["text"])
    mime.add_alternative(params["html"], subtype="html")
    return mime


async def send(settings: Settings, mime: EmailMessage, timeout: float) -> Outcome:
    """Hands the message to SMTP_HOST; a timeout is pinned to SMTP (the server may have taken it)."""
    assert settings.smtp_host is not None  # the caller routes to SMTP only when it is configured
    try:
        await aiosmtplib.send(
            mime,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            start_tls=settings.smtp_tls == "starttls",
            use_tls=settings.smtp_tls == "tls",
            timeout=timeout,
        )
    except aiosmtplib.SMTPTimeoutError:
        return Retry(TIMED_OUT.format(seconds=timeout), provider=PROVIDER)
    except aiosmtplib.SMTPResponseException as error:
        text = f"SMTP {error.code}: {error.message}"
        return Retry(text) if error.code // 100 == TRANSIENT_CLASS else Failed(text)
    except (aiosmtplib.SMTPException, OSError) as error:
        # Refused or dropped before the server took the message: nothing was sent, another provider may try.
        return Retry(f"SMTP: {error!r}")
    return Sent(provider_message_id=str(mime["Message-ID"]), provider=PROVIDER)
