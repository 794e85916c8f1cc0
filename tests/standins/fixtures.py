"""Function-scoped pytest fixtures: each test gets its own started stand-in, stopped afterwards.

tests/conftest.py imports them, so every test can ask for them by name.
A stand-in bug (an exception inside the server) fails the test that triggered it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest

from tests.standins.chat import ChatPlatforms
from tests.standins.fcm import FcmService
from tests.standins.http import StandIn
from tests.standins.push_service import PushService
from tests.standins.resend import ResendService
from tests.standins.twilio import TwilioService
from tests.standins.webhook_receiver import WebhookReceiver

__all__ = ["chat_platforms", "fcm_service", "push_service", "resend_service", "twilio_service", "webhook_receiver"]

S = TypeVar("S", bound=StandIn)


def _running(service: S) -> Iterator[S]:
    with service:
        yield service
    assert not service.errors, "\n".join(service.errors)


@pytest.fixture
def push_service() -> Iterator[PushService]:
    yield from _running(PushService())


@pytest.fixture
def fcm_service() -> Iterator[FcmService]:
    yield from _running(FcmService())


@pytest.fixture
def resend_service() -> Iterator[ResendService]:
    yield from _running(ResendService())


@pytest.fixture
def twilio_service() -> Iterator[TwilioService]:
    yield from _running(TwilioService())


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    yield from _running(WebhookReceiver())


@pytest.fixture
def chat_platforms() -> Iterator[ChatPlatforms]:
    yield from _running(ChatPlatforms())
