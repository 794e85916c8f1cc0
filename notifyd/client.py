"""A typed client of notifyd's service routes, sync (`Client`) and async (`AsyncClient`), over httpx.

    with Client("https://notify.example.com", ServiceKey("billing", key)) as notifyd:
        sent = notifyd.send(user_id, "invoice", "Your invoice is ready")

Sends are retried on connection errors, 5xx and 429 (Retry-After honoured, backoff capped) with the same
Idempotency-Key, one made per logical send when the caller gives none: a retry never sends twice.
An error answer raises `NotifydError` with its HTTP status and the API's code and message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, TypeVar, Unpack

import httpx
from pydantic import BaseModel

from notifyd.core.models import (
    IDEMPOTENCY_HEADER,
    PREFIX,
    SERVICE_KEY_HEADER,
    SERVICE_NAME_HEADER,
    BatchStatus,
    BulkAccepted,
    Cancelled,
    Channel,
    CreatedNotification,
    Explanation,
    Priority,
)

# Statuses worth another try: the server or a proxy in front of it was briefly unable to answer.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

Model = TypeVar("Model", bound=BaseModel)


class NotifydError(Exception):
    """An error answer of notifyd: `status` (HTTP), `code` (e.g. VALIDATION_ERROR) and `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, response: httpx.Response) -> NotifydError:
        try:
            error = response.json()["error"]
            return cls(response.status_code, str(error["code"]), str(error["message"]))
        except (ValueError, KeyError, TypeError):
            # Not notifyd's JSON (a proxy's error page, say): the status speaks for itself.
            return cls(response.status_code, "HTTP_ERROR", response.text[:200] or response.reason_phrase)


@dataclass(frozen=True)
class ServiceKey:
    """A key made by notify.create_service_key(name), sent with the service's name."""

    name: str
    key: str

    def headers(self) -> dict[str, str]:
        return {SERVICE_KEY_HEADER: self.key, SERVICE_NAME_HEADER: self.name}


@dataclass(frozen=True)
class Bearer:
    """A JWT with role service (or admin) signed with notifyd's JWT_SECRET."""

    token: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Retry:
    """How often and how long to retry: attempts in all, exponential backoff from `backoff`, capped."""

    attempts: int = 4
    backoff: float = 0.25
    max_delay: float = 10.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before attempt `attempt + 1`: the server's Retry-After if it gave one, within the cap."""
        wait: float = self.backoff * 2**attempt
        asked = response.headers.get("retry-after") if response is not None else None
        if asked is not None:
            try:
                wait = float(asked)
            except ValueError:
                pass  # an HTTP date: our own backoff is as good
        return max(0.0, min(wait, self.max_delay))


@dataclass(frozen=True)
class _Call:
    """One logical request: retried as a whole, with the same headers (and so the same idempotency key)."""

    method: Literal["GET", "POST"]
    path: str
    json: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


class SendOptions(TypedDict, total=False):
    """The keyword fields of a send (`Client.send`, `send_bulk`): all optional, priority normal when left out."""

    priority: Priority
    data: dict[str, Any] | None
    channels: Sequence[Channel] | None
    send_at: datetime | None
    expires_at: datetime | None
    group_key: str | None
    template_id: str | None
    template_vars: dict[str, Any] | None
    idempotency_key: str | None


def _send_body(type: str, title: str | None, body: str | None, options: SendOptions) -> dict[str, Any]:
    channels, send_at, expires_at = options.get("channels"), options.get("send_at"), options.get("expires_at")
    fields: dict[str, Any] = {
        "type": type, "title": title, "body": body, "priority": options.get("priority", "normal"),
        "data": options.get("data"),
        "channels": list(channels) if channels is not None else None,
        "send_at": send_at.isoformat() if send_at else None,
        "expires_at": expires_at.isoformat() if expires_at else None,
        "group_key": options.get("group_key"), "template_id": options.get("template_id"),
        "template_vars": options.get("template_vars"),
    }  # fmt: skip
    return {name: value for name, value in fields.items() if value is not None}


def _idempotent(key: str | None) -> dict[str, str]:
    return {IDEMPOTENCY_HEADER: key or str(uuid.uuid4())}


def _parsed(model: type[Model], response: httpx.Response) -> Model:
    if response.status_code >= 400:
        raise NotifydError.of(response)
    return model.model_validate_json(response.content)


def _retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


class _Calls:
    """The routes as `_Call`s, shared by both clients so that their requests cannot drift apart."""

    @staticmethod
    def send(user_id: uuid.UUID | str, type: str, title: str | None, body: str | None, options: SendOptions) -> _Call:
        fields = {"user_id": str(user_id), **_send_body(type, title, body, options)}
        return _Call("POST", PREFIX, fields, _idempotent(options.get("idempotency_key")))

    @staticmethod
    def send_bulk(
        user_ids: Sequence[uuid.UUID | str], type: str, title: str | None, body: str | None, options: SendOptions
    ) -> _Call:
        fields = {"user_ids": [str(u) for u in user_ids], **_send_body(type, title, body, options)}
        return _Call("POST", f"{PREFIX}/bulk", fields, _idempotent(options.get("idempotency_key")))

    @staticmethod
    def batch_status(batch_id: uuid.UUID | str) -> _Call:
        return _Call("GET", f"{PREFIX}/bulk/{uuid.UUID(str(batch_id))}")

    @staticmethod
    def cancel(notification_id: uuid.UUID | str) -> _Call:
        return _Call("POST", f"{PREFIX}/{uuid.UUID(str(notification_id))}/cancel")

    @staticmethod
    def explain(notification_id: uuid.UUID | str) -> _Call:
        return _Call("GET", f"{PREFIX}/{uuid.UUID(str(notification_id))}/explain")


class Client:
    """notifyd's service routes, blocking. Use as a context manager, or call close()."""

    def __init__(
        self, base_url: str, auth: ServiceKey | Bearer, *, timeout: float = 10.0, retry: Retry | None = None
    ) -> None:
        self.retry = retry or Retry()
        self.http = httpx.Client(base_url=base_url, headers=auth.headers(), timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _request(self, call: _Call) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                response = self.http.request(call.method, call.path, json=call.json, headers=call.headers)
            except httpx.TransportError:
                if last:
                    raise
                time.sleep(self.retry.delay(attempt, None))
                continue
            if last or not _retryable(response):
                return response
            time.sleep(self.retry.delay(attempt, response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def send(
        self, user_id: uuid.UUID | str, type: str, title: str | None = None, body: str | None = None,
        **options: Unpack[SendOptions],
    ) -> CreatedNotification:  # fmt: skip
        return _parsed(CreatedNotification, self._request(_Calls.send(user_id, type, title, body, options)))

    def send_bulk(
        self, user_ids: Sequence[uuid.UUID | str], type: str, title: str | None = None, body: str | None = None,
        **options: Unpack[SendOptions],
    ) -> BulkAccepted:  # fmt: skip
        return _parsed(BulkAccepted, self._request(_Calls.send_bulk(user_ids, type, title, body, options)))

    def batch_status(self, batch_id: uuid.UUID | str) -> BatchStatus:
        return _parsed(BatchStatus, self._request(_Calls.batch_status(batch_id)))

    def cancel(self, notification_id: uuid.UUID | str) -> Cancelled:
        return _parsed(Cancelled, self._request(_Calls.cancel(notification_id)))

    def explain(self, notification_id: uuid.UUID | str) -> Explanation:
        return _parsed(Explanation, self._request(_Calls.explain(notification_id)))


class AsyncClient:
    """notifyd's service routes, for asyncio. Use as an async context manager, or await aclose()."""

    def __init__(
        self, base_url: str, auth: ServiceKey | Bearer, *, timeout: float = 10.0, retry: Retry | None = None
    ) -> None:
        self.retry = retry or Retry()
        self.http = httpx.AsyncClient(base_url=base_url, headers=auth.headers(), timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _request(self, call: _Call) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                response = await self.http.request(call.method, call.path, json=call.json, headers=call.headers)
            except httpx.TransportError:
                if last:
                    raise
                await asyncio.sleep(self.retry.delay(attempt, None))
                continue
            if last or not _retryable(response):
                return response
            await asyncio.sleep(self.retry.delay(attempt, response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def send(
        self, user_id: uuid.UUID | str, type: str, title: str | None = None, body: str | None = None,
        **options: Unpack[SendOptions],
    ) -> CreatedNotification:  # fmt: skip
        return _parsed(CreatedNotification, await self._request(_Calls.send(user_id, type, title, body, options)))

    async def send_bulk(
        self, user_ids: Sequence[uuid.UUID | str], type: str, title: str | None = None, body: str | None = None,
        **options: Unpack[SendOptions],
    ) -> BulkAccepted:  # fmt: skip
        return _parsed(BulkAccepted, await self._request(_Calls.send_bulk(user_ids, type, title, body, options)))

    async def batch_status(self, batch_id: uuid.UUID | str) -> BatchStatus:
        return _parsed(BatchStatus, await self._request(_Calls.batch_status(batch_id)))

    async def cancel(self, notification_id: uuid.UUID | str) -> Cancelled:
        return _parsed(Cancelled, await self._request(_Calls.cancel(notification_id)))

    async def explain(self, notification_id: uuid.UUID | str) -> Explanation:
        return _parsed(Explanation, await self._request(_Calls.explain(notification_id)))
