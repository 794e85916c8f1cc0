"""`notifyd dev`: the whole service (API, WebSocket, worker) on an embedded default database, with a demo page.

Dev mode only: it mints tokens for a few demo users, keeps its secrets in .notifyd/dev-secrets.json, and
stands in for every provider that is not configured: Resend (/dev/resend, which can be made to fail) and an
SMTP server on a free loopback port (aiosmtpd, the `dev` extra), both landing in one outbox shown at
/dev/outbox; Twilio's Messages API (/dev/twilio, what arrived: /dev/sms.json); a webhook receiver that
verifies Standard Webhooks signatures, and Slack, Teams and Discord, at /dev/hooks/{kind} (what arrived:
/dev/hooks.json).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import email
import email.policy
import html
import json
import secrets
import signal
import string
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
import jwt
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from notifyd import server
from notifyd.core.config import Settings, env
from notifyd.core.crypto import SecretBox, new_key, parse_key
from notifyd.core.requestid import configure_logging
from notifyd.db.localdb import owner_database, state_dir
from notifyd.db.migrate import migrate_url
from notifyd.db.queries import query
from notifyd.worker import runner as worker

if TYPE_CHECKING:
    from aiosmtpd.smtp import Envelope

DEV_DATABASE = "notifyd"
DEV_LOGIN = "notifyd_dev"
DEV_PASSWORD = "notifyd-dev"
DEMO_USERS = {
    "alice": uuid.UUID("a11ce000-0000-4000-8000-000000000001"),
    "bob": uuid.UUID("b0b00000-0000-4000-8000-000000000002"),
    "carol": uuid.UUID("ca201000-0000-4000-8000-000000000003"),
}
# The demo's tour shows both ways e-mail goes: alice takes it at once (her own preference, set on the first
# run), bob and carol keep the default daily digest.
INSTANT_EMAIL_USER = "alice"
# The product the demo page plays; e-mails name it as their sender unless RESEND_FROM_NAME says otherwise.
DEMO_PRODUCT = "Acme Tasks"
SECRETS_FILE = "dev-secrets.json"
OUTBOX_API_KEY = "re_dev_outbox"
# The dev SMS sink's Twilio account; the demo users' numbers are from the range reserved for fiction (555-01xx).
SMS_SINK_SID = "ACdev0000000000000000000000000000"
SMS_SINK_TOKEN = "dev-sms-sink"
SMS_SINK_FROM = "+12025550100"
DEMO_PHONES = {"alice": "+12025550101", "bob": "+12025550102", "carol": "+12025550103"}


def _as_login(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{DEV_LOGIN}:{DEV_PASSWORD}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def prepare_database(owner_url: str) -> str:
    """Migrates the database and returns the URL notifyd logs in with (never the owner)."""
    await migrate_url(owner_url)
    conn = await asyncpg.connect(owner_url)
    try:
        if not await conn.fetchval(query("dev_login_exists")):
            try:
                await conn.execute(query("create_dev_login"))
            except asyncpg.DuplicateObjectError:
                pass  # made meanwhile by another dev process
        await conn.execute(query("grant_dev_login"))
        for name, user_id in DEMO_USERS.items():
            await conn.execute(query("dev_recipient"), user_id, f"{name}@example.com", DEMO_PHONES[name])
        await conn.execute(query("dev_instant_email"), DEMO_USERS[INSTANT_EMAIL_USER])
    finally:
        await conn.close()
    return _as_login(owner_url)


def _token(secret: str, sub: str, role: str) -> str:
    return jwt.encode({"sub": sub, "role": role, "exp": int(time.time()) + 12 * 3600}, secret, algorithm="HS256")


def _addresses(to: object) -> str:
    return ", ".join(map(str, to)) if isinstance(to, list) else str(to)


# The demo page runs its own inline module and style and talks to this origin only (fetch, WebSocket, the
# service worker); nothing frames it. notifyd.http.hygiene adds nosniff and no-referrer to every page.
DEMO_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# An e-mail's own HTML, sandboxed (no script of it runs on this origin), with its remote images as a mail
# client would show them.
NOTHING_CAUGHT = '<tr><td colspan="4">Nothing has arrived yet.</td></tr>'
EMAIL_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src * data:; frame-ancestors 'none'"


RESEND_DOWN = {"statusCode": 500, "name": "application_error", "message": "the dev outbox is set to fail"}


class Outbox:
    """Where dev e-mail lands when no provider is configured: Resend's POST /emails, kept in memory, and the
    messages of the dev SMTP server (SmtpSink), each marked with the way it came (`via`).

    The Resend door can be set to fail (`failing`, PUT /dev/resend/failing): it answers 500 as Resend does when
    it is down, so Resend's circuit opens and new e-mail goes over SMTP. Its page (/dev/outbox) is a
    developer's tool, not part of the demo product, and looks it: it must not pass for the demo's own
    "E-mail outbox" tab.
    """

    def __init__(self, page: str) -> None:
        self._page = string.Template(page)
        self.emails: list[dict[str, object]] = []
        self._by_key: dict[str, str] = {}
        self.failing = False

    def keep(self, via: str, fields: dict[str, object]) -> str:
        """Keeps one arrived e-mail (newest first); its id."""
        email_id = str(uuid.uuid4())
        self.emails.insert(0, {"id": email_id, "received_at": time.strftime("%H:%M:%S"), "via": via, **fields})
        return email_id

    async def receive(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {OUTBOX_API_KEY}":
            return JSONResponse({"statusCode": 401, "name": "invalid_api_key", "message": "API key is invalid"}, 401)
        if self.failing:
            return JSONResponse(RESEND_DOWN, 500)
        key = request.headers.get("idempotency-key")
        if key is not None and key in self._by_key:
            return JSONResponse({"id": self._by_key[key]})
        email_id = self.keep("resend", await request.json())
        if key is not None:
            self._by_key[key] = email_id
        return JSONResponse({"id": email_id})

    async def set_failing(self, request: Request) -> JSONResponse:
        try:
            wanted = (await request.json())["failing"]
        except (ValueError, KeyError, TypeError):
            wanted = None
        if not isinstance(wanted, bool):
            return JSONResponse({"error": 'a JSON body {"failing": true|false}'}, 400)
        self.failing = wanted
        return JSONResponse({"failing": self.failing})

    async def page(self, _: Request) -> HTMLResponse:
        rows = "".join(
            f"<tr><td>{html.escape(str(e['received_at']))}</td><td>{html.escape(str(e['via']))}</td>"
            f"<td>{html.escape(_addresses(e.get('to')))}</td>"
            f'<td><a href="/dev/outbox/{e["id"]}">{html.escape(str(e.get("subject")))}</a></td></tr>'
            for e in self.emails
        )
        return HTMLResponse(self._page.substitute(count=len(self.emails), rows=rows or NOTHING_CAUGHT))

    async def listing(self, _: Request) -> JSONResponse:
        fields = ("id", "received_at", "via", "subject")
        emails = [{**{f: e.get(f) for f in fields}, "to": _addresses(e.get("to"))} for e in self.emails]
        return JSONResponse({"resend_failing": self.failing, "emails": emails})

    async def show(self, request: Request) -> Response:
        wanted = request.path_params["email_id"]
        for caught in self.emails:
            if caught["id"] == wanted:
                # The e-mail's own HTML, sandboxed: no script of it runs on this origin.
                return HTMLResponse(str(caught.get("html") or ""), headers={"Content-Security-Policy": EMAIL_CSP})
        return HTMLResponse("no such e-mail", status_code=404)


# aiosmtpd computes its greeting's host name with socket.getfqdn(), a DNS lookup that can take seconds.
SMTP_SINK_HOSTNAME = "notifyd-dev"
SMTP_ACCEPTED = "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server on a free loopback port whose messages land in the outbox: where dev e-mail goes while
    Resend's circuit is open and no SMTP_HOST is configured. aiosmtpd (the `dev` extra) runs it in this
    event loop; `start` answers None without it, and dev runs without the SMTP side of failover."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def start(self) -> asyncio.Server | None:
        try:
            from aiosmtpd.smtp import SMTP  # noqa: PLC0415 - dev's own dependency: notifyd serve never needs it
        except ImportError:
            return None
        return await asyncio.get_running_loop().create_server(
            lambda: SMTP(self, hostname=SMTP_SINK_HOSTNAME), "127.0.0.1", 0
        )

    async def handle_DATA(self, _server: object, _session: object, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        assert isinstance(message, EmailMessage)  # the default policy's class
        body = message.get_body(preferencelist=("html",))
        self._outbox.keep("smtp", {"to": str(message["To"] or ""), "subject": str(message["Subject"] or ""),
                                   "html": body.get_content() if body is not None else "",
                                   "message_id": str(message["Message-ID"] or "")})  # fmt: skip
        return SMTP_ACCEPTED


class SmsSink:
    """Twilio's Messages API, kept in memory: where dev SMS land when no Twilio account is configured
    (/dev/sms.json lists them, newest first)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    async def receive(self, request: Request) -> JSONResponse:
        expected = "Basic " + base64.b64encode(f"{SMS_SINK_SID}:{SMS_SINK_TOKEN}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        message = {"sid": "SM" + uuid.uuid4().hex, "received_at": time.strftime("%H:%M:%S"),
                   "to": form.get("To", ""), "from": form.get("From", ""), "body": form.get("Body", "")}  # fmt: skip
        self.messages.insert(0, message)
        return JSONResponse({**message, "status": "queued"}, 201)

    async def listing(self, _: Request) -> JSONResponse:
        return JSONResponse(self.messages)


HOOK_KINDS = ("webhook", "slack", "teams", "discord")
# What the demo shows of a webhook request: the Standard Webhooks headers.
WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
HOOKS_KEPT = 100
NOT_VERIFIED = {"error": "signature verification failed"}
BAD_SECRET = {"error": 'a JSON body {"secret": "whsec_..."}: the secret an endpoint was created with'}


def _usable(secret: str) -> bool:
    try:
        Webhook(secret)
    except (ValueError, EmptyWebhookSecretError):
        return False
    return True


class HookSink:
    """A webhook receiver and the three chat platforms' incoming webhooks, kept in memory for the demo.

    The receiver verifies each request with the standardwebhooks library against every secret it was given
    (POST /dev/hooks/webhook/secrets, as a receiver's operator pastes the secret an endpoint was created
    with): none verifies it -> 401, as a real receiver answers, and the request is listed as rejected.
    """

    def __init__(self) -> None:
        self.arrived: list[dict[str, object]] = []
        self.secrets: list[str] = []

    async def trust(self, request: Request) -> JSONResponse:
        try:
            secret = (await request.json())["secret"]
        except (ValueError, KeyError, TypeError):
            secret = None
        if not isinstance(secret, str) or not secret.startswith("whsec_") or not _usable(secret):
            return JSONResponse(BAD_SECRET, 400)
        if secret not in self.secrets:
            self.secrets.append(secret)
        return JSONResponse({"secrets": len(self.secrets)})

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    async def receive(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in HOOK_KINDS:
            return JSONResponse({"error": "no such hook"}, 404)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": "a JSON body"}, 400)
        headers = {name: request.headers[name] for name in WEBHOOK_HEADERS if name in request.headers}
        verified = self._verified(raw, headers) if kind == "webhook" else None
        self.arrived.insert(0, {"kind": kind, "received_at": time.strftime("%H:%M:%S"), "headers": headers,
                                "verified": verified, "body": body})  # fmt: skip
        del self.arrived[HOOKS_KEPT:]
        if verified is False:
            return JSONResponse(NOT_VERIFIED, 401)
        # Each platform's success answer: Slack 200 "ok", Teams 202, Discord 204, a receiver 204.
        return Response("ok", 200) if kind == "slack" else Response(status_code=202 if kind == "teams" else 204)

    async def listing(self, _: Request) -> JSONResponse:
        return JSONResponse(self.arrived)


class Sinks:
    """The local stand-ins of one dev process: the routes serve them, run_everything starts the SMTP server."""

    def __init__(self) -> None:
        page = resources.files("notifyd").joinpath("static", "dev-sink.html").read_text(encoding="utf-8")
        self.outbox = Outbox(page)
        self.smtp = SmtpSink(self.outbox)
        self.sms = SmsSink()
        self.hooks = HookSink()


def routes(settings: Settings, sinks: Sinks | None = None) -> list[BaseRoute]:
    page = resources.files("notifyd").joinpath("static", "demo.html").read_text(encoding="utf-8")
    sinks = sinks or Sinks()
    outbox, sms, hooks = sinks.outbox, sinks.sms, sinks.hooks

    async def demo(_: Request) -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": DEMO_CSP})

    async def tokens(_: Request) -> JSONResponse:
        users = {
            name: {"user_id": str(uid), "token": _token(settings.jwt_secret, str(uid), "authenticated")}
            for name, uid in DEMO_USERS.items()
        }
        # admin_token: a DBA's (no org_id claim), to sign in to the operator console at /console.
        return JSONResponse(
            {
                "users": users,
                "service_token": _token(settings.jwt_secret, "demo-service", "service"),
                "admin_token": _token(settings.jwt_secret, "demo-admin", "admin"),
                "hooks_url": f"http://127.0.0.1:{settings.port}/dev/hooks",
                # The numbers the SMS stand-in takes for the demo users (the demo's "Set my phone number").
                "phones": DEMO_PHONES,
            }
        )

    return [
        Route("/", demo, methods=["GET"]),
        Route("/dev/tokens", tokens, methods=["GET"]),
        Route("/dev/outbox", outbox.page, methods=["GET"]),
        Route("/dev/outbox.json", outbox.listing, methods=["GET"]),
        Route("/dev/outbox/{email_id}", outbox.show, methods=["GET"]),
        Route("/dev/resend/emails", outbox.receive, methods=["POST"]),
        Route("/dev/resend/failing", outbox.set_failing, methods=["PUT"]),
        Route("/dev/twilio/2010-04-01/Accounts/{sid}/Messages.json", sms.receive, methods=["POST"]),
        Route("/dev/sms.json", sms.listing, methods=["GET"]),
        Route("/dev/hooks.json", hooks.listing, methods=["GET"]),
        Route("/dev/hooks/webhook/secrets", hooks.trust, methods=["POST"]),
        Route("/dev/hooks/{kind}", hooks.receive, methods=["POST"]),
    ]


def dev_secrets(state_dir: Path) -> dict[str, str]:
    """The dev JWT secret and encryption key, made on the first run and kept, so restarts keep working."""
    path = state_dir / SECRETS_FILE
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        return stored
    made = {"jwt_secret": secrets.token_urlsafe(32), "encryption_key": new_key()}
    state_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(made), encoding="utf-8")
    return made


def dev_settings(login_url: str) -> Settings:
    """The environment's settings, with every channel given a local default where it has none."""
    kept = dev_secrets(state_dir())
    settings = Settings.from_env(database_url=login_url, jwt_secret=env("JWT_SECRET") or kept["jwt_secret"])
    defaults: dict[str, object] = {}
    if settings.secrets is None:
        defaults["secrets"] = SecretBox(parse_key(kept["encryption_key"]))
    if settings.vapid_subject is None:
        defaults["vapid_subject"] = "mailto:dev@localhost"
    if env("RESEND_FROM_NAME") is None:
        defaults["resend_from_name"] = DEMO_PRODUCT
    if settings.notification_center_url is None:
        defaults["notification_center_url"] = f"{settings.public_base_url}/#inbox"
    if settings.resend_api_key is None:
        defaults |= {
            "resend_api_key": OUTBOX_API_KEY,
            "resend_api_url": f"http://127.0.0.1:{settings.port}/dev/resend",
            "resend_from_email": settings.resend_from_email or "notifyd@localhost",
        }
    if settings.twilio_account_sid is None:
        defaults |= {
            "twilio_account_sid": SMS_SINK_SID,
            "twilio_auth_token": SMS_SINK_TOKEN,
            "twilio_from_number": SMS_SINK_FROM,
            "twilio_api_url": f"http://127.0.0.1:{settings.port}/dev/twilio",
        }
    # The demo's hook sink is on this process's own loopback port: webhooks and chat may post there.
    sink = f"http://127.0.0.1:{settings.port}"
    if env("WEBHOOK_ENDPOINT_ALLOWLIST") is None:
        defaults["webhook_endpoint_allowlist"] = (sink,)
    defaults["chat_webhook_hosts"] = {
        platform: hosts if env(f"{platform.upper()}_WEBHOOK_HOSTS") is not None else (*hosts, sink)
        for platform, hosts in settings.chat_webhook_hosts.items()
    }
    return dataclasses.replace(settings, **defaults)  # type: ignore[arg-type]


class _Server(server.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # dev stops the server and the worker together: the signal handlers are run_everything's.
        yield


def with_smtp_sink(settings: Settings, port: int) -> Settings:
    """E-mail fails over to the dev SMTP server on `port`, unless SMTP_HOST names a real one."""
    if settings.smtp_host is not None:
        return settings
    return dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none",
                               smtp_username=None, smtp_password=None)  # fmt: skip


async def run_everything(settings: Settings) -> int:
    """The API, WebSocket and worker in one process until Ctrl-C; the worker's exit status."""
    sinks = Sinks()
    smtp_server = await sinks.smtp.start() if settings.smtp_host is None else None
    if smtp_server is not None:
        settings = with_smtp_sink(settings, smtp_server.sockets[0].getsockname()[1])
    elif settings.smtp_host is None:
        print(
            "notifyd dev: no SMTP sink (pip install 'notifyd[dev]' adds aiosmtpd): e-mail has no failover", flush=True
        )
    web = _Server(server.config(settings, routes(settings, sinks)))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    web_task = asyncio.create_task(web.serve())
    worker_task = asyncio.create_task(worker.serve(settings, stop))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({web_task, worker_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    web.should_exit = True
    stop.set()
    await asyncio.gather(web_task, stopping)
    status = await worker_task
    if smtp_server is not None:
        smtp_server.close()
    return status


def run() -> int:
    owner_url, cluster = owner_database(DEV_DATABASE)
    try:
        login_url = asyncio.run(prepare_database(owner_url))
        settings = dev_settings(login_url)
        print(
            f"notifyd dev: database migrated; demo on http://{settings.host}:{settings.port}/ (Ctrl-C stops)",
            flush=True,
        )
        configure_logging()
        status = asyncio.run(run_everything(settings))
    finally:
        if cluster is not None:
            cluster.stop()
    print("notifyd dev: stopped", flush=True)
    return status
