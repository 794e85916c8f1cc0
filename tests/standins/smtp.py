"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records every message it accepts, parsed.

`SmtpService().start()` listens on a free port (`port`); `messages` are the accepted messages in order
(email.message.EmailMessage, policy default), `envelopes` their (MAIL FROM, RCPT TO) pairs. `delay` seconds
pass between taking a message (it is recorded) and answering 250, as a slow server's would: a client killed
in between never learns that it was taken.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.server import free_port


class _Recorder:
    def __init__(self, service: SmtpService) -> None:
        self.service = service

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's name
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.service.record(parsed, str(envelope.mail_from), list(envelope.rcpt_tos))
        await asyncio.sleep(self.service.delay)
        return "250 Message accepted for delivery"


class SmtpService:
    def __init__(self, delay: float = 0.0) -> None:
        self.port = free_port()
        self.delay = delay
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self._envelopes: list[tuple[str, list[str]]] = []
        self._controller = Controller(_Recorder(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def record(self, message: EmailMessage, mail_from: str, rcpt_tos: list[str]) -> None:
        with self._lock:
            self._messages.append(message)
            self._envelopes.append((mail_from, rcpt_tos))

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        with self._lock:
            return list(self._envelopes)
