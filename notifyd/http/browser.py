"""The browser side, served by notifyd itself: the JS client, the custom elements and the service worker.

Files are read from the package once and served with an ETag; only the names below are served. The
service worker is also served at the origin's root, the only place its scope can cover a whole site.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC_PREFIX = "/static"
SERVICE_WORKER = "notifyd-sw.js"
FILES = {
    "notifyd-client.js": "text/javascript",
    "notifyd-client.d.ts": "application/typescript",
    "notifyd-elements.js": "text/javascript",
    "notifyd-push.js": "text/javascript",
    SERVICE_WORKER: "text/javascript",
}
# Modules are imported from other origins (the product's pages): they are public code, like a CDN's.
CACHE_CONTROL = "public, max-age=300, must-revalidate"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str

    def response(self, request: Request, headers: dict[str, str] | None = None) -> Response:
        common = {
            "ETag": self.etag,
            "Cache-Control": CACHE_CONTROL,
            "Access-Control-Allow-Origin": "*",  # nosniff and no-referrer: notifyd.http.hygiene, on every answer
            **(headers or {}),
        }
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=common)
        return Response(self.body, media_type=self.media_type, headers=common)


def _load() -> dict[str, StaticFile]:
    static = resources.files("notifyd").joinpath("static")
    loaded = {}
    for name, media_type in FILES.items():
        path = static.joinpath(name)
        if path.is_file():
            body = path.read_bytes()
            loaded[name] = StaticFile(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return loaded


def routes() -> list[BaseRoute]:
    files = _load()

    async def static_file(request: Request) -> Response:
        found = files.get(request.path_params["name"])
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return found.response(request)

    async def service_worker(request: Request) -> Response:
        found = files.get(SERVICE_WORKER)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return found.response(request, {"Service-Worker-Allowed": "/"})

    return [
        Route(f"{STATIC_PREFIX}/{{name}}", static_file, methods=["GET"]),
        Route(f"/{SERVICE_WORKER}", service_worker, methods=["GET"]),
    ]
