"""Where the worker may POST a URL a user gave it (webhook endpoints): the SSRF rules.

The rules are the push allow-list's (notifyd.domain.webpush.endpoint_allowed: http(s), a plain host, no
userinfo) turned around, since a webhook may go to any site: a URL is allowed if an allow-list entry
matches it (the way to reach a loopback or private host, or plain http), or if it is https to a host whose
every address is public, checked when notifyd connects (the resolver below), so a name that resolves to
a private address later is refused too. No redirect is followed (each POST says allow_redirects=False).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from notifyd.domain.webpush import endpoint_allowed

NOT_HTTPS = (
    "a webhook URL is https://host[:port]/path, with no user or password, unless WEBHOOK_ENDPOINT_ALLOWLIST allows it"
)
NOT_PUBLIC = "is not a public address (loopback, private, link-local or reserved)"


class RefusedAddress(OSError):
    """A host that resolves to an address the SSRF rules refuse."""


def public_address(address: str) -> bool:
    """Whether an IP address is on the public internet (cloud metadata, 169.254.169.254, is link-local)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def url_refused(url: str, allowlist: Sequence[str]) -> str | None:
    """Why the worker may not POST to this URL (a sentence), or None. Host names are checked again on connect."""
    if endpoint_allowed(url, allowlist):
        return None
    if not endpoint_allowed(url, ("https://*:*",)):
        return NOT_HTTPS
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        return f"{host} {NOT_PUBLIC}"
    if _ip_literal(host) and not public_address(host):
        return f"{host} {NOT_PUBLIC}"
    return None


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver that refuses a host with any non-public address, unless the allow-list names it.

    aiohttp does not resolve IP literals (url_refused checks those before the POST).
    """

    def __init__(self, allowlist: Sequence[str]) -> None:
        self._allowlist = tuple(allowlist)
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        if any(endpoint_allowed(f"{scheme}://{host}:{port}/", self._allowlist) for scheme in ("https", "http")):
            return answers
        refused = [a["host"] for a in answers if not public_address(a["host"])]
        if refused:
            raise RefusedAddress(f"{host} resolves to {refused[0]}, which {NOT_PUBLIC}")
        return answers

    async def close(self) -> None:
        await self._inner.close()


def refused_connection(error: BaseException) -> RefusedAddress | None:
    """The RefusedAddress behind an aiohttp connection error, if that is what it was."""
    seen: Any = error
    while seen is not None:
        if isinstance(seen, RefusedAddress):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None
