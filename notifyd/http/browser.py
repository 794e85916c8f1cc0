"""The browser side, served by notifyd itself: the JS client, the custom elements and the service worker.

Files are read from the package once and served with an ETag; only the names below (and the element
modules) are served. The service worker is also served at the origin's root, the only place its scope can
cover a whole site; so is the icon, where browsers ask for it on every page of the origin (the demo, e-mail
previews, the API).
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
JS = "text/javascript"
FAVICON = "favicon.ico"
FILES = {
    "notifyd-client.js": JS,
    "notifyd-client.d.ts": "application/typescript",
    "notifyd-elements.js": JS,
    "notifyd-push.js": JS,
    SERVICE_WORKER: JS,
    FAVICON: "image/x-icon",
    "console.js": JS,
    "console-charts.js": JS,
}
# The operator console (notifyd/static/console.js): its page is served at /console only, with its policy.
CONSOLE_PATH = "/console"
CONSOLE_PAGE = "console.html"
# The console's own module and style only; it talks to this origin alone and nothing frames it (it acts as an admin).
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# notifyd-elements.js imports one module per custom element from here: every .js file in it is served.
ELEMENTS_DIR = "elements"
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
    elements = static.joinpath(ELEMENTS_DIR)
    modules = [f"{ELEMENTS_DIR}/{path.name}" for path in elements.iterdir() if path.name.endswith(".js")]
    loaded = {}
    for name, media_type in {**FILES, **dict.fromkeys(modules, JS)}.items():
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

    def at_root(name: str, headers: dict[str, str] | None = None) -> Route:
        async def serve(request: Request) -> Response:
            found = files.get(name)
            if found is None:
                return Response("not found", status_code=404, media_type="text/plain")
            return found.response(request, headers)

        return Route(f"/{name}", serve, methods=["GET"])

    page = resources.files("notifyd").joinpath("static", CONSOLE_PAGE).read_bytes()
    console = StaticFile(page, "text/html; charset=utf-8", f'"{hashlib.sha256(page).hexdigest()[:32]}"')

    async def console_page(request: Request) -> Response:
        return console.response(request, {"Content-Security-Policy": CONSOLE_CSP})

    return [
        Route(CONSOLE_PATH, console_page, methods=["GET"]),
        Route(f"{STATIC_PREFIX}/{{name:path}}", static_file, methods=["GET"]),
        at_root(SERVICE_WORKER, {"Service-Worker-Allowed": "/"}),
        at_root(FAVICON),
    ]
