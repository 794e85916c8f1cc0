"""What the webhook and chat channels share: a JSON POST to a URL a user gave, and what its answer means."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime

import aiohttp
from aiohttp.abc import AbstractResolver

from notifyd.domain.deliveries import Delivery, Failed, Gone, Outcome, ProviderSession, Retry, Sent
from notifyd.domain.outbound import refused_connection
from notifyd.domain.push import retry_after_seconds

log = logging.getLogger("notifyd.worker")

# POSTs in flight at once per channel and worker process, each on a pooled keep-alive connection.
PARALLEL_POSTS = 32
ERROR_TEXT_LIMIT = 300
REDIRECTED = "the receiver answered with a redirect (not followed)"


def http_outcome(status: int, reason: str, text: str, retry_after: str | None, gone: Collection[int] = ()) -> Outcome:
    """2xx is taken; a `gone` status means the target no longer exists; 408, 429 and 5xx are tried again (never
    sooner than Retry-After); a redirect or any other 4xx is refused for good."""
    error = f"{status} {reason}: {text[:ERROR_TEXT_LIMIT]}".strip()
    if 200 <= status < 300:
        return Sent()
    if status in gone:
        return Gone(error)
    if status in (408, 429) or status >= 500:
        return Retry(error, retry_after_seconds(retry_after, datetime.now(UTC)))
    if 300 <= status < 400:
        return Failed(REDIRECTED)
    return Failed(error)


class JsonPosts:
    """PARALLEL_POSTS JSON POSTs at once over one channel's keep-alive connections; never a redirect followed."""

    def __init__(self, timeout: float, resolver: Callable[[], AbstractResolver] | None = None,
                 gone: Collection[int] = ()) -> None:  # fmt: skip
        self._http = ProviderSession(PARALLEL_POSTS, timeout, resolver)
        self._slots = asyncio.Semaphore(PARALLEL_POSTS)
        self._gone = gone

    async def post(self, delivery: Delivery, url: str, body: bytes, headers: Mapping[str, str],
                   secret_path: str | None = None) -> Outcome:  # fmt: skip
        """POSTs and says what the answer means; `secret_path` (a URL that is a credential) stays out of errors."""
        async with self._slots:
            try:
                post = self._http.get().post(url, data=body, headers=dict(headers), allow_redirects=False)
                async with post as answer:
                    text = (await answer.read()).decode("utf-8", "replace")
                    retry_after = answer.headers.get("Retry-After")
                    return http_outcome(answer.status, answer.reason or "", text, retry_after, self._gone)
            except (aiohttp.ClientError, TimeoutError) as error:
                refused = refused_connection(error)
                if refused is not None:
                    return Failed(str(refused))
                text = str(error).replace(secret_path, "/…") if secret_path else str(error)
                return Retry(f"{type(error).__name__}: {text[:ERROR_TEXT_LIMIT]}")
            except Exception as error:  # one delivery's surprise must not fail the others
                log.exception("delivery %s failed unexpectedly", delivery.id)
                return Retry(f"unexpected error: {type(error).__name__}")

    async def close(self) -> None:
        await self._http.close()
