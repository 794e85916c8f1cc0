"""The settings of the notifyd process, read from the environment.

VARIABLES is the one list of every environment variable notifyd reads: `env()` refuses any
other name, Settings.from_env reads through it, and each command's --help lists its own.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from notifyd.core.crypto import SecretBox, SecretsError, parse_key

# The browsers' push services, over HTTPS only: a subscription naming any other URL is refused.
DEFAULT_PUSH_ENDPOINT_ALLOWLIST = (
    "fcm.googleapis.com",
    "*.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)

# Where chat messages may go, per platform: the hosts of their incoming webhooks (Teams: Office 365
# connectors, and the Workflows app's Power Automate hosts).
DEFAULT_CHAT_WEBHOOK_HOSTS: dict[str, tuple[str, ...]] = {
    "slack": ("hooks.slack.com",),
    "teams": ("*.webhook.office.com", "*.logic.azure.com", "*.environment.api.powerplatform.com"),
    "discord": ("discord.com", "discordapp.com"),
}


SERVE, WORKER, MIGRATE, DEV = "serve", "worker", "migrate", "dev"
_RUNNING = (SERVE, WORKER, DEV)  # the processes that build Settings
_ALL = (SERVE, WORKER, MIGRATE, DEV)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its default as the docs state it, what it does, who reads it."""

    name: str
    default: str
    description: str
    commands: tuple[str, ...]


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DATABASE_URL",
        "(dev and migrate: a local default)",
        "PostgreSQL URL: the login role for serve/worker, the database owner for migrate",
        _ALL,
    ),
    Variable(
        "DATABASE_REPLICA_URL",
        "(none: every read on DATABASE_URL)",
        "comma-separated URLs of streaming replicas (same login role) for reads that tolerate lag: lists, "
        "unread counts, history, export, analytics, explain",
        (SERVE, DEV),
    ),
    Variable(
        "DATABASE_DIRECT_URL",
        "DATABASE_URL",
        "the primary itself, never a pooler: LISTEN connections and the start-up check go here",
        (SERVE, WORKER),
    ),
    Variable(
        "DATABASE_POOL_MODE",
        "session",
        "transaction: DATABASE_URL is a transaction-pooling PgBouncer (no prepared statements, no session state)",
        (SERVE, WORKER),
    ),
    Variable(
        "JWT_SECRET",
        "(required; dev makes one)",
        "HS256 secret the JWTs of users and services are signed with",
        _RUNNING,
    ),
    Variable("JWT_AUDIENCE", "(none: aud not checked)", "the aud claim every JWT must carry", _RUNNING),
    Variable("NOTIFYD_HOST", "127.0.0.1", "address serve listens on", (SERVE, DEV)),
    Variable("NOTIFYD_PORT", "8000", "port serve listens on", (SERVE, DEV)),
    Variable(
        "PUBLIC_BASE_URL",
        "http://NOTIFYD_HOST:NOTIFYD_PORT",
        "notifyd's address as clients see it (links in e-mails, WebSocket origin)",
        _RUNNING,
    ),
    Variable("WS_HEARTBEAT_INTERVAL", "30", "seconds between WebSocket pings (and the pong timeout)", (SERVE, DEV)),
    Variable("WS_MAX_CONNECTIONS", "10000", "WebSocket connections one serve process accepts", (SERVE, DEV)),
    Variable(
        "CORS_ALLOWED_ORIGINS",
        "(none: no CORS headers)",
        "comma-separated origins whose pages may call the API",
        (SERVE, DEV),
    ),
    Variable(
        "WS_ALLOWED_ORIGINS",
        "(none: any origin)",
        "comma-separated origins whose pages may open the WebSocket (PUBLIC_BASE_URL always may)",
        (SERVE, DEV),
    ),
    Variable("MAX_BODY_BYTES", "1048576", "request bodies over this many bytes are refused with 413", (SERVE, DEV)),
    Variable(
        "MAX_HEADER_BYTES",
        "16384",
        "a request head (line and headers) over this many bytes is refused with 431",
        (SERVE, DEV),
    ),
    Variable("MAX_HEADER_COUNT", "100", "a request with more header fields is refused with 431", (SERVE, DEV)),
    Variable(
        "WS_MAX_CONNECTIONS_PER_USER",
        "20",
        "WebSockets and SSE streams one user may hold open on one serve process (the newest is refused)",
        (SERVE, DEV),
    ),
    Variable(
        "SERVICE_KEY_MAX_FAILURES",
        "10",
        "wrong service keys from one client address before it is answered 429 until the window ends",
        (SERVE, DEV),
    ),
    Variable(
        "SERVICE_KEY_FAILURE_WINDOW", "60", "seconds, from the first wrong key, that the count covers", (SERVE, DEV)
    ),
    Variable(
        "FORWARDED_ALLOW_IPS",
        "(none: the TCP peer is the client)",
        "comma-separated proxy addresses/networks whose X-Forwarded-For names the client",
        (SERVE, DEV),
    ),
    Variable(
        "NOTIFYD_LISTEN_FD",
        "(none)",
        "set by serve --workers for its children: the listening socket they share (never set it yourself)",
        (SERVE,),
    ),
    Variable("LOG_FORMAT", "text", "text, or json: one JSON object per log line", _RUNNING),
    Variable(
        "TEMPLATE_MAX_OUTPUT_BYTES", "262144", "bytes one template rendering may produce, all fields together", _RUNNING
    ),
    Variable("TEMPLATE_RENDER_TIMEOUT", "1.0", "seconds one template rendering may take", _RUNNING),
    Variable(
        "TEMPLATE_RENDER_PROCESSES", "2", "child processes that render templates, per serve and per worker", _RUNNING
    ),
    Variable(
        "NOTIFICATION_ENCRYPTION_KEY",
        "(none: push subscriptions cannot be stored)",
        "base64 32-byte key sealing secrets and sensitive fields at rest",
        _RUNNING,
    ),
    Variable(
        "NOTIFICATION_ENCRYPTION_OLD_KEYS",
        "(none)",
        "comma-separated earlier keys, still opened after a key rotation",
        _RUNNING,
    ),
    Variable("VAPID_PUBLIC_KEY", "(none: worker keeps one in the database)", "Web Push VAPID public key", _RUNNING),
    Variable("VAPID_PRIVATE_KEY", "(none)", "Web Push VAPID private key", _RUNNING),
    Variable("VAPID_SUBJECT", "(none: Web Push off)", "mailto: or https: contact sent to push services", _RUNNING),
    Variable(
        "PUSH_ENDPOINT_ALLOWLIST",
        "the browsers' push services",
        "comma-separated host patterns a push subscription's endpoint may name",
        _RUNNING,
    ),
    Variable(
        "WEBHOOK_ENDPOINT_ALLOWLIST",
        "(none: public https URLs only)",
        "comma-separated host patterns a webhook endpoint may name although the SSRF rules refuse them",
        _RUNNING,
    ),
    Variable(
        "SLACK_WEBHOOK_HOSTS", "hooks.slack.com", "comma-separated host patterns of Slack incoming webhooks", _RUNNING
    ),
    Variable(
        "TEAMS_WEBHOOK_HOSTS",
        "*.webhook.office.com, *.logic.azure.com, *.environment.api.powerplatform.com",
        "comma-separated host patterns of Microsoft Teams incoming webhooks and Workflows",
        _RUNNING,
    ),
    Variable(
        "DISCORD_WEBHOOK_HOSTS",
        "discord.com, discordapp.com",
        "comma-separated host patterns of Discord webhooks",
        _RUNNING,
    ),
    Variable("FCM_PROJECT_ID", "(none: FCM off)", "Firebase project of the FCM channel", _RUNNING),
    Variable("GOOGLE_APPLICATION_CREDENTIALS", "(none)", "service-account JSON file for FCM", _RUNNING),
    Variable("FCM_API_URL", "(Google's)", "FCM endpoint (a stand-in in tests)", _RUNNING),
    Variable("RESEND_API_KEY", "(none: e-mail off)", "Resend API key of the e-mail channel", _RUNNING),
    Variable("RESEND_API_URL", "(Resend's)", "Resend endpoint (a stand-in in tests)", _RUNNING),
    Variable("RESEND_FROM_EMAIL", "(none)", "sender address of e-mails", _RUNNING),
    Variable("RESEND_FROM_NAME", "notifyd", "sender name of e-mails", _RUNNING),
    Variable(
        "RESEND_MAX_CONCURRENCY",
        "4",
        "Resend requests one worker process has open at once (Resend's default limit is 5 requests/s per team)",
        (WORKER, DEV),
    ),
    Variable(
        "RESEND_WEBHOOK_SECRET", "(none: webhook refused)", "signing secret of Resend's delivery webhooks", _RUNNING
    ),
    Variable("TWILIO_ACCOUNT_SID", "(none: SMS off)", "Twilio Account SID of the SMS channel", _RUNNING),
    Variable(
        "TWILIO_AUTH_TOKEN",
        "(none: SMS off)",
        "Twilio auth token: the SMS channel's password, and the key inbound replies are signed with",
        _RUNNING,
    ),
    Variable(
        "TWILIO_FROM_NUMBER", "(none)", "E.164 number SMS are sent from (or set TWILIO_MESSAGING_SERVICE_SID)", _RUNNING
    ),
    Variable(
        "TWILIO_MESSAGING_SERVICE_SID",
        "(none)",
        "Twilio Messaging Service that picks the sender (wins over TWILIO_FROM_NUMBER)",
        _RUNNING,
    ),
    Variable("TWILIO_API_URL", "(Twilio's)", "Twilio endpoint (a stand-in in tests)", _RUNNING),
    Variable("SMS_MAX_LENGTH", "320", "characters of an SMS's text at most, its link included", _RUNNING),
    Variable(
        "SMTP_HOST", "(none: no failover)", "SMTP server e-mail fails over to when Resend's circuit opens", _RUNNING
    ),
    Variable("SMTP_PORT", "587", "its port", _RUNNING),
    Variable("SMTP_USERNAME", "(none: no AUTH)", "SMTP login", _RUNNING),
    Variable("SMTP_PASSWORD", "(none)", "SMTP password", _RUNNING),
    Variable("SMTP_TLS", "starttls", "starttls, tls (implicit, port 465) or none (a local relay only)", _RUNNING),
    Variable(
        "PRIVACY_POLICY_URL",
        "(none: e-mails have no privacy link)",
        "the product's privacy policy, linked in e-mail footers",
        _RUNNING,
    ),
    Variable(
        "NOTIFICATION_CENTER_URL",
        "(none: digests link only what notifications link)",
        "the product's page of a user's notifications, linked from digest e-mails",
        _RUNNING,
    ),
    Variable("PROVIDER_TIMEOUT", "10", "seconds a provider call may take before it counts as failed", _RUNNING),
    Variable("WORKER_CONCURRENCY", "8", "jobs one worker runs at once", (WORKER, DEV)),
    Variable("WORKER_HEARTBEAT_INTERVAL", "10", "seconds between the worker's heartbeats", (WORKER, DEV)),
    Variable(
        "WORKER_STALLED_AFTER", "30", "seconds of silence after which a worker's jobs are taken back", (WORKER, DEV)
    ),
    Variable("WORKER_POLL_INTERVAL", "1", "seconds between looks for jobs scheduled for later", (WORKER, DEV)),
    Variable(
        "NOTIFYD_LOCAL_SERVER",
        "127.0.0.1:5432",
        "without DATABASE_URL: the local PostgreSQL server to use if it answers",
        (MIGRATE, DEV),
    ),
    Variable(
        "NOTIFYD_PRIVATE_PORT", "54329", "without a local server: port of the private cluster started", (MIGRATE, DEV)
    ),
    Variable(
        "NOTIFYD_PRIVATE_DIR", "NOTIFYD_STATE_DIR/pgdata", "data directory of that private cluster", (MIGRATE, DEV)
    ),
    Variable(
        "NOTIFYD_STATE_DIR", "./.notifyd", "where dev keeps its secrets, outbox and private cluster", (MIGRATE, DEV)
    ),
)
REGISTRY = {v.name: v for v in VARIABLES}


def env(name: str) -> str | None:
    """The variable's value; only the registered names may be read, so that the docs list them all."""
    if name not in REGISTRY:
        raise KeyError(f"{name} is not in notifyd.core.config.VARIABLES")
    return os.environ.get(name)


def variables_of(command: str) -> list[Variable]:
    return [v for v in VARIABLES if command in v.commands]


def help_text(variables: Iterable[Variable]) -> str:
    """The environment section of a command's --help."""
    lines = [f"  {v.name:32} {v.description} (default: {v.default})" for v in variables]
    return "environment variables:\n" + "\n".join(lines)


# An origin as browsers send it in the Origin header: scheme://host[:port], nothing more.
_ORIGIN = re.compile(r"https?://[^/?#\s]+")


def _origins(name: str) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in (env(name) or "").split(",") if o.strip())
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise SystemExit(f"notifyd: {name} takes origins such as https://app.example.com, got {origin!r}")
    return origins


Number = TypeVar("Number", int, float)


def _number(name: str, default: Number, parse: Callable[[str], Number], what: str) -> Number:
    """The variable read by `parse` (int or float), `default` when unset or empty; exits naming it otherwise."""
    raw = env(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise SystemExit(f"notifyd: {name} must be {what}, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    return _number(name, default, float, "a number")


def _seconds(name: str, default: float) -> float:
    value = _float(name, default)
    if not value > 0:
        raise SystemExit(f"notifyd: {name} must be a number of seconds above 0, got {value}")
    return value


# Where one URL of DATABASE_REPLICA_URL ends: a comma before the next scheme (a multi-host URL keeps its commas).
_NEXT_URL = re.compile(r",\s*(?=postgres(?:ql)?://)")


def _database_urls(name: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in _NEXT_URL.split(env(name) or "") if u.strip())
    for url in urls:
        # After the hosts, a comma can only be where a URL without its scheme was meant to start.
        if not url.startswith(("postgresql://", "postgres://")) or "," in url.partition("//")[2].partition("/")[2]:
            raise SystemExit(
                f"notifyd: {name} takes comma-separated postgresql:// URLs; URL {urls.index(url) + 1} is not one "
                "(or has a comma after its hosts)"
            )
    return urls


def _text(name: str) -> str | None:
    return env(name) or None


def _secret_box() -> SecretBox | None:
    current = _text("NOTIFICATION_ENCRYPTION_KEY")
    if current is None:
        return None
    try:
        old = tuple(
            parse_key(k, "NOTIFICATION_ENCRYPTION_OLD_KEYS")
            for k in (env("NOTIFICATION_ENCRYPTION_OLD_KEYS") or "").split(",")
            if k.strip()
        )
        return SecretBox(parse_key(current), old)
    except SecretsError as error:
        raise SystemExit(f"notifyd: {error}") from None


def _networks(name: str) -> tuple[str, ...]:
    """IP addresses and CIDR networks, comma-separated; anything else (a name, "*") refuses to start."""
    entries = tuple(e.strip() for e in (env(name) or "").split(",") if e.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry)
        except ValueError:
            raise SystemExit(f"notifyd: {name} takes IP addresses and networks (10.0.0.0/8), got {entry!r}") from None
    return entries


def _int(name: str, default: int) -> int:
    return _number(name, default, int, "a whole number")


def _positive(name: str, default: int) -> int:
    value = _int(name, default)
    if value < 1:
        raise SystemExit(f"notifyd: {name} must be at least 1, got {value}")
    return value


LOG_FORMATS = ("text", "json")


POOL_MODES = ("session", "transaction")
SMTP_TLS_MODES = ("starttls", "tls", "none")


def transaction_pooling() -> bool:
    """Whether DATABASE_URL reaches PostgreSQL through a pooler in transaction mode (DATABASE_POOL_MODE)."""
    value = env("DATABASE_POOL_MODE") or "session"
    if value not in POOL_MODES:
        raise SystemExit(f"notifyd: DATABASE_POOL_MODE is session or transaction, got {value!r}")
    return value == "transaction"


def _direct_url(url: str, pooled: bool) -> str:
    direct = env("DATABASE_DIRECT_URL")
    if pooled and not direct:
        # Through the pooler LISTEN would be accepted and then receive nothing: refuse rather than fall back to polls.
        raise SystemExit(
            "notifyd: DATABASE_POOL_MODE=transaction needs DATABASE_DIRECT_URL, the primary itself: "
            "LISTEN receives nothing through a transaction pooler"
        )
    return direct or url


def _smtp_tls() -> str:
    value = env("SMTP_TLS") or "starttls"
    if value not in SMTP_TLS_MODES:
        raise SystemExit(f"notifyd: SMTP_TLS is starttls, tls or none, got {value!r}")
    return value


def _patterns(name: str) -> tuple[str, ...]:
    """A comma-separated list of allow-list entries (`[scheme://]host-glob[:port-glob]`)."""
    return tuple(p.strip() for p in (env(name) or "").split(",") if p.strip())


def _log_format() -> str:
    value = env("LOG_FORMAT") or "text"
    if value not in LOG_FORMATS:
        raise SystemExit(f"notifyd: LOG_FORMAT is text or json, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str
    jwt_secret: str
    # Streaming replicas for the reads that tolerate lag (notifyd.db.replicas); empty: all on database_url.
    database_replica_urls: tuple[str, ...] = field(default=(), repr=False)
    jwt_audience: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    ws_heartbeat_interval: int = 30
    ws_max_connections: int = 10_000
    # Open WebSocket and SSE sessions of one user in this process; one more is refused (4008 / 429).
    ws_max_connections_per_user: int = 20
    public_base_url: str = "http://127.0.0.1:8000"
    # Seconds of clock skew tolerated on exp/nbf/iat.
    jwt_leeway: int = 30
    # Secrets at rest; None: push subscriptions cannot be stored (push is not configured).
    secrets: SecretBox | None = field(default=None, repr=False)
    vapid_public_key: str | None = None
    vapid_private_key: str | None = field(default=None, repr=False)
    vapid_subject: str | None = None
    push_endpoint_allowlist: tuple[str, ...] = DEFAULT_PUSH_ENDPOINT_ALLOWLIST
    # Webhook endpoints may be any public https URL; entries here (same syntax as the push allow-list) also
    # allow hosts the SSRF rules refuse otherwise: loopback, private, link-local, http.
    webhook_endpoint_allowlist: tuple[str, ...] = ()
    # Chat incoming-webhook hosts per platform (same syntax); the tests point them at their stand-ins.
    chat_webhook_hosts: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_CHAT_WEBHOOK_HOSTS)
    fcm_project_id: str | None = None
    google_application_credentials: str | None = None
    fcm_api_url: str | None = None
    resend_api_key: str | None = field(default=None, repr=False)
    resend_api_url: str | None = None
    resend_from_email: str | None = None
    resend_from_name: str = "notifyd"
    resend_webhook_secret: str | None = field(default=None, repr=False)
    resend_max_concurrency: int = 4
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_url: str | None = None
    sms_max_length: int = 320
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: str = "starttls"
    privacy_policy_url: str | None = None
    # The product's notification center: notifyd serves no such page, so digests link it only when set.
    notification_center_url: str | None = None
    # Seconds any provider call may take before it counts as failed (and is retried).
    provider_timeout: float = 10.0
    worker_concurrency: int = 8
    # Procrastinate's heartbeat, and the silence after which a worker's running jobs are taken back.
    worker_heartbeat_interval: float = 10.0
    worker_stalled_after: float = 30.0
    # How often the worker looks for jobs scheduled for later (retries); new jobs arrive by NOTIFY.
    worker_poll_interval: float = 1.0
    # Pages on these origins may call the API from the browser (CORS); empty: no CORS headers at all.
    cors_allowed_origins: tuple[str, ...] = ()
    # Pages on these origins (and notifyd's own, PUBLIC_BASE_URL) may open the WebSocket; empty: any origin.
    ws_allowed_origins: tuple[str, ...] = ()
    # A request body over this many bytes is refused with 413 before it is read.
    max_body_bytes: int = 1024 * 1024
    # This many wrong service keys from one client address within the window (seconds, from the first of
    # them) and that address is refused service keys with 429 until the window ends.
    service_key_max_failures: int = 10
    service_key_failure_window: float = 60.0
    # Proxies whose X-Forwarded-For names the client (uvicorn's ProxyHeadersMiddleware); empty: the TCP peer.
    forwarded_allow_ips: tuple[str, ...] = ()
    # A request line with its headers over this many bytes, or with more header fields, is refused with 431.
    max_header_bytes: int = 16 * 1024
    max_header_count: int = 100
    # Log lines as text (default) or one JSON object per line (notifyd.core.requestid.JsonFormatter).
    log_format: str = "text"
    # One template rendering (all its fields) may write this many bytes and take this many seconds.
    template_max_output_bytes: int = 256 * 1024
    template_render_timeout: float = 1.0
    # Pre-started child processes that render templates for serve and the worker (killed when over budget).
    template_render_processes: int = 2
    # The primary itself for what needs a session of its own (LISTEN, the fan-out reader), when DATABASE_URL is
    # a pooler; and whether that pooler pools transactions (the drivers then prepare nothing, set nothing per
    # session). Empty: DATABASE_URL.
    database_direct_url: str = ""
    transaction_pooling: bool = False

    @property
    def direct_url(self) -> str:
        """The URL of connections that keep session state (LISTEN, SET): never through a transaction pooler."""
        return self.database_direct_url or self.database_url

    @classmethod
    def from_env(cls, database_url: str | None = None, jwt_secret: str | None = None) -> Settings:
        """The settings of the environment; `dev` passes the database and secret it made itself."""
        url = database_url or env("DATABASE_URL")
        if not url:
            raise SystemExit("notifyd: DATABASE_URL is not set")
        secret = jwt_secret or env("JWT_SECRET")
        if not secret:
            raise SystemExit("notifyd: JWT_SECRET is not set")
        host = env("NOTIFYD_HOST") or "127.0.0.1"
        port = _int("NOTIFYD_PORT", 8000)
        # dev passes the database it made itself: no pooler stands in front of it.
        pooled = transaction_pooling() if database_url is None else False
        return cls(
            database_url=url,
            jwt_secret=secret,
            database_replica_urls=_database_urls("DATABASE_REPLICA_URL"),
            jwt_audience=_text("JWT_AUDIENCE"),
            host=host,
            port=port,
            ws_heartbeat_interval=_int("WS_HEARTBEAT_INTERVAL", 30),
            ws_max_connections=_int("WS_MAX_CONNECTIONS", 10_000),
            public_base_url=(env("PUBLIC_BASE_URL") or f"http://{host}:{port}").rstrip("/"),
            secrets=_secret_box(),
            vapid_public_key=_text("VAPID_PUBLIC_KEY"),
            vapid_private_key=_text("VAPID_PRIVATE_KEY"),
            vapid_subject=_text("VAPID_SUBJECT"),
            push_endpoint_allowlist=tuple(
                p.strip() for p in (env("PUSH_ENDPOINT_ALLOWLIST") or "").split(",") if p.strip()
            )
            or DEFAULT_PUSH_ENDPOINT_ALLOWLIST,
            webhook_endpoint_allowlist=_patterns("WEBHOOK_ENDPOINT_ALLOWLIST"),
            chat_webhook_hosts={
                "slack": _patterns("SLACK_WEBHOOK_HOSTS") or DEFAULT_CHAT_WEBHOOK_HOSTS["slack"],
                "teams": _patterns("TEAMS_WEBHOOK_HOSTS") or DEFAULT_CHAT_WEBHOOK_HOSTS["teams"],
                "discord": _patterns("DISCORD_WEBHOOK_HOSTS") or DEFAULT_CHAT_WEBHOOK_HOSTS["discord"],
            },
            fcm_project_id=_text("FCM_PROJECT_ID"),
            google_application_credentials=_text("GOOGLE_APPLICATION_CREDENTIALS"),
            fcm_api_url=_text("FCM_API_URL"),
            resend_api_key=_text("RESEND_API_KEY"),
            resend_api_url=_text("RESEND_API_URL"),
            resend_from_email=_text("RESEND_FROM_EMAIL"),
            resend_from_name=_text("RESEND_FROM_NAME") or "notifyd",
            resend_webhook_secret=_text("RESEND_WEBHOOK_SECRET"),
            resend_max_concurrency=_positive("RESEND_MAX_CONCURRENCY", 4),
            twilio_account_sid=_text("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=_text("TWILIO_AUTH_TOKEN"),
            twilio_from_number=_text("TWILIO_FROM_NUMBER"),
            twilio_messaging_service_sid=_text("TWILIO_MESSAGING_SERVICE_SID"),
            twilio_api_url=_text("TWILIO_API_URL"),
            sms_max_length=_positive("SMS_MAX_LENGTH", 320),
            smtp_host=_text("SMTP_HOST"),
            smtp_port=_positive("SMTP_PORT", 587),
            smtp_username=_text("SMTP_USERNAME"),
            smtp_password=_text("SMTP_PASSWORD"),
            smtp_tls=_smtp_tls(),
            privacy_policy_url=_text("PRIVACY_POLICY_URL"),
            notification_center_url=_text("NOTIFICATION_CENTER_URL"),
            provider_timeout=_float("PROVIDER_TIMEOUT", 10.0),
            worker_concurrency=_int("WORKER_CONCURRENCY", 8),
            worker_heartbeat_interval=_float("WORKER_HEARTBEAT_INTERVAL", 10.0),
            worker_stalled_after=_float("WORKER_STALLED_AFTER", 30.0),
            worker_poll_interval=_float("WORKER_POLL_INTERVAL", 1.0),
            cors_allowed_origins=_origins("CORS_ALLOWED_ORIGINS"),
            ws_allowed_origins=_origins("WS_ALLOWED_ORIGINS"),
            max_body_bytes=_positive("MAX_BODY_BYTES", 1024 * 1024),
            service_key_max_failures=_positive("SERVICE_KEY_MAX_FAILURES", 10),
            service_key_failure_window=_seconds("SERVICE_KEY_FAILURE_WINDOW", 60.0),
            forwarded_allow_ips=_networks("FORWARDED_ALLOW_IPS"),
            max_header_bytes=_positive("MAX_HEADER_BYTES", 16 * 1024),
            max_header_count=_positive("MAX_HEADER_COUNT", 100),
            ws_max_connections_per_user=_positive("WS_MAX_CONNECTIONS_PER_USER", 20),
            log_format=_log_format(),
            template_max_output_bytes=_positive("TEMPLATE_MAX_OUTPUT_BYTES", 256 * 1024),
            template_render_timeout=_float("TEMPLATE_RENDER_TIMEOUT", 1.0),
            template_render_processes=_positive("TEMPLATE_RENDER_PROCESSES", 2),
            database_direct_url=_direct_url(url, pooled) if database_url is None else "",
            transaction_pooling=pooled,
        )
