"""The SMS channel: Twilio's Messages API over plain HTTP, phone numbers in E.164, and Twilio's request signature.

Plain HTTP on the channels' shared keep-alive session (ProviderSession), not the `twilio` SDK: the SDK's
async client opens its own aiohttp session per client and pulls in a large dependency for one form POST,
and the inbound signature is ten lines of HMAC. Twilio takes no idempotency key for a message: an attempt
cut off by a timeout, or a worker killed after Twilio answered, may send an SMS twice; the ledger counts
the second as a repeat when it knows of the first (a kill), and a timeout retries as every channel does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import phonenumbers

from notifyd.core.config import Settings
from notifyd.domain.deliveries import Delivery, Failed, Outcome, ProviderSession, Retry, Sent, Skipped
from notifyd.domain.email import open_link
from notifyd.domain.push import retry_after_seconds

log = logging.getLogger("notifyd.worker")

PROVIDER = "twilio"
TWILIO_API_URL = "https://api.twilio.com"
MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"
NOT_CONFIGURED = "SMS is not configured: set {missing}"
NO_PHONE = "no phone number"
TIMED_OUT = "Twilio did not answer within {seconds:g} s"
UNEXPECTED = "unexpected error while sending: {error!r}"
# Twilio's own limit on a message body (it splits longer ones into segments, each billed).
TWILIO_MAX_BODY = 1600
ELLIPSIS = "…"
# Twilio's error for a number that replied STOP to this sender: nothing to retry.
UNSUBSCRIBED_RECIPIENT = 21610
SMS_CONCURRENCY = 4

NOT_A_NUMBER = "phone must be a phone number in international form such as +14155550100, got {value!r}"
NOT_VALID = "phone {value!r} is not a valid number for its country"


def e164(value: str, region: str | None = None) -> str:
    """The number in E.164 (+ and up to 15 digits); ValueError with a clear message if it is not a valid one.

    Without `region` the number must start with + and its country code: a recipient's locale says
    nothing reliable about where their phone is registered.
    """
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError(NOT_A_NUMBER.format(value=value)) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(NOT_VALID.format(value=value))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def sms_text(notification: Mapping[str, Any], max_length: int) -> str:
    """The SMS of a notification: title and body, cut to fit `max_length` with an ellipsis, the link kept whole.

    The link is the notification's own (data.url or data.action_url, http(s) only); it is the reason
    many SMS are sent, so the text gives way to it, never the other way round.
    """
    words = " ".join(
        part.strip() for part in (notification.get("title"), notification.get("body")) if part and part.strip()
    )
    link = open_link(notification.get("data") or {})
    room = max_length - (len(link) + 1 if link else 0)
    if len(words) > room:
        words = words[: max(room - len(ELLIPSIS), 0)].rstrip() + ELLIPSIS if room > len(ELLIPSIS) else ""
    text = f"{words} {link}" if words and link else (words or link or "")
    return text[:TWILIO_MAX_BODY]


def request_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64 of HMAC-SHA1, keyed with the auth token, of the URL and each POST
    parameter's name and value appended, sorted by name, then value (a repeated pair counted once, as
    Twilio's own validators do)."""
    data = url + "".join(name + value for name, value in sorted(set(params)))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str) -> bool:
    return hmac.compare_digest(request_signature(auth_token, url, params).encode(), signature.encode("utf-8"))


def outcome_of(status: int, answer: Mapping[str, Any], headers: Mapping[str, str]) -> Outcome:
    """429 and 5xx are worth retrying; other refusals (a bad number, an opted-out one) are final."""
    message = f"Twilio {status} {answer.get('code', '')}: {answer.get('message', 'no message')}".replace("  ", " ")
    if status == 429:
        return Retry(message, retry_after_seconds(headers.get("Retry-After"), datetime.now(UTC)))
    if status >= 500:
        return Retry(message)
    return Failed(message)


class SmsChannel:
    """The `sms` queue: one Twilio Messages request per delivery, a few at once over keep-alive connections."""

    queue = "sms"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._http = ProviderSession(SMS_CONCURRENCY, settings.provider_timeout)
        self._slots = asyncio.Semaphore(SMS_CONCURRENCY)
        # aiohttp bounds each read; this bounds a whole slow-dripping answer.
        self._deadline = settings.provider_timeout * 2

    def not_configured(self) -> str | None:
        s = self._settings
        missing = [name for name, value in (("TWILIO_ACCOUNT_SID", s.twilio_account_sid),
                                            ("TWILIO_AUTH_TOKEN", s.twilio_auth_token)) if not value]  # fmt: skip
        if not (s.twilio_from_number or s.twilio_messaging_service_sid):
            missing.append("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        return NOT_CONFIGURED.format(missing=" and ".join(missing)) if missing else None

    def form(self, delivery: Delivery) -> dict[str, str]:
        """The Messages API's form fields: To, the sender (a Messaging Service wins over a number), Body."""
        s = self._settings
        sender = (
            {"MessagingServiceSid": s.twilio_messaging_service_sid}
            if s.twilio_messaging_service_sid
            else {"From": s.twilio_from_number or ""}
        )
        return {"To": delivery.recipient["phone"], **sender, "Body": sms_text(delivery.notification, s.sms_max_length)}

    async def send(self, deliveries: Sequence[Delivery]) -> Mapping[uuid.UUID, Outcome]:
        outcomes = await asyncio.gather(*(self._send_one(d) for d in deliveries))
        return {d.id: o for d, o in zip(deliveries, outcomes, strict=True)}

    async def _send_one(self, delivery: Delivery) -> Outcome:
        if not delivery.recipient.get("phone"):
            return Skipped(NO_PHONE)
        s = self._settings
        assert s.twilio_account_sid is not None and s.twilio_auth_token is not None  # not_configured() said so
        url = (s.twilio_api_url or TWILIO_API_URL).rstrip("/") + MESSAGES_PATH.format(sid=s.twilio_account_sid)
        auth = aiohttp.BasicAuth(s.twilio_account_sid, s.twilio_auth_token)
        try:
            async with self._slots, asyncio.timeout(self._deadline):
                async with self._http.get().post(
                    url, data=self.form(delivery), auth=auth, allow_redirects=False
                ) as response:
                    status, headers = response.status, response.headers
                    answer = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return Retry(TIMED_OUT.format(seconds=self._deadline))
        except (aiohttp.ClientError, ValueError) as error:
            return Retry(f"Twilio: {error!r}")
        except Exception as error:  # noqa: BLE001 - send() answers for every delivery, whatever broke
            log.exception("SMS delivery %s", delivery.id)
            return Retry(UNEXPECTED.format(error=error))
        if not isinstance(answer, dict):
            answer = {}
        if status in (200, 201) and isinstance(answer.get("sid"), str):
            return Sent(provider_message_id=answer["sid"], provider=PROVIDER)
        return outcome_of(status, answer, headers)

    async def close(self) -> None:
        await self._http.close()
