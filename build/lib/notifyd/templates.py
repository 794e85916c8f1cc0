"""Notification templates: Jinja2 in a sandbox, per language, and the worker task that renders SQL sends.

Templates are data (DBAs and org admins write them), so they run in Jinja2's SandboxedEnvironment:
no `__` attributes, no unsafe callables. A variable the sender did not give is an error naming it
(StrictUndefined), never an empty string. Only the e-mail HTML is autoescaped; in-app, push and
e-mail text are plain text and stay untouched.

A template notification inserted by SQL is held by the database (held_until = 'infinity') with
one `render_notifications` job; this module renders it and calls notify_private.store_rendering,
which releases its real-time event and starts its deliveries, or notify_private.render_failed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import jinja2
import jinja2.meta
import nh3
import procrastinate
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from notifyd import sensitive
from notifyd.config import Settings
from notifyd.crypto import SecretBox, SecretsError
from notifyd.db import as_worker
from notifyd.queries import query

log = logging.getLogger("notifyd.worker")

QUEUE = "render"
TASK = "render_notifications"
CACHE_SIZE = 512

NO_TEMPLATE = 'template "{name}" does not exist in any language'
NO_LANGUAGE = 'template "{name}" has no version in {tried}'
UNDEFINED = 'template "{name}" ({language}) {field}: {error}'
UNSAFE = 'template "{name}" ({language}) {field} was refused by the sandbox: {error}'
SYNTAX = 'template "{name}" ({language}) {field} does not compile: {error}'
UNDECLARED = 'template "{name}" ({language}) {field} uses undeclared variables: {names}'

# Template column → (rendered channel, key); the in-app title and body are the notification's own columns.
FIELDS: dict[str, tuple[str, str]] = {
    "title_template": ("in_app", "title"),
    "body_template": ("in_app", "body"),
    "push_title_template": ("push", "title"),
    "push_body_template": ("push", "body"),
    "email_subject_template": ("email", "subject"),
    "email_html_template": ("email", "html"),
    "email_text_template": ("email", "text"),
}
HTML_FIELD = "email_html_template"

_text = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
_html = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=True, keep_trailing_newline=True)


class TemplateError(Exception):
    """A template that cannot be used or rendered; the message says which and why."""


@dataclass(frozen=True)
class Rendering:
    title: str
    body: str
    rendered: dict[str, dict[str, str]]


def _environment(field: str) -> SandboxedEnvironment:
    return _html if field == HTML_FIELD else _text


class CompiledTemplates:
    """Compiled templates keyed by (template row id, version, field): a new version is a new key."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._compiled: OrderedDict[tuple[str, int, str], jinja2.Template] = OrderedDict()
        self.compilations = 0  # how often a template was actually compiled (tests watch the cache)

    def get(self, template: Mapping[str, Any], field: str) -> jinja2.Template:
        key = (str(template["id"]), int(template["version"]), field)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_field(template, field)
            self.compilations += 1
            self._compiled[key] = compiled
            if len(self._compiled) > self._size:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return compiled


def _where(template: Mapping[str, Any], field: str) -> dict[str, str]:
    return {"name": str(template["name"]), "language": str(template["language"]), "field": field}


def compile_field(template: Mapping[str, Any], field: str) -> jinja2.Template:
    try:
        return _environment(field).from_string(template[field])
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(SYNTAX.format(**_where(template, field), error=error)) from None


def check(template: Mapping[str, Any]) -> None:
    """Refuses a template that does not compile or uses a variable its `variables` do not declare."""
    declared = set(template.get("variables") or {})
    for field in FIELDS:
        source = template.get(field)
        if source is None:
            continue
        compile_field(template, field)
        used = jinja2.meta.find_undeclared_variables(_environment(field).parse(source))
        # Jinja2's own globals (range, cycler, …) are not variables the sender gives.
        undeclared = sorted(used - declared - set(_environment(field).globals))
        if undeclared:
            raise TemplateError(UNDECLARED.format(**_where(template, field), names=", ".join(undeclared)))


def choose(templates: Sequence[Mapping[str, Any]], name: str, locale: str, default_language: str) -> Mapping[str, Any]:
    """Exact locale (pt-BR), then its language (pt), then the default language; TemplateError otherwise."""
    if not templates:
        raise TemplateError(NO_TEMPLATE.format(name=name))
    by_language = {str(t["language"]).lower(): t for t in templates}
    tried = list(dict.fromkeys([locale, locale.split("-")[0], default_language]))
    for language in tried:
        if language.lower() in by_language:
            return by_language[language.lower()]
    raise TemplateError(NO_LANGUAGE.format(name=name, tried=", ".join(tried)))


def _render_field(
    cache: CompiledTemplates, template: Mapping[str, Any], field: str, variables: Mapping[str, Any]
) -> str:
    compiled = cache.get(template, field)
    try:
        return compiled.render(variables)
    except jinja2.UndefinedError as error:
        raise TemplateError(UNDEFINED.format(**_where(template, field), error=error.message)) from None
    except jinja2.exceptions.SecurityError as error:
        raise TemplateError(UNSAFE.format(**_where(template, field), error=error)) from None
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as error:
        raise TemplateError(UNDEFINED.format(**_where(template, field), error=error)) from None


def render(cache: CompiledTemplates, template: Mapping[str, Any], variables: Mapping[str, Any]) -> Rendering:
    """Every channel's text; a channel without its own template shows the in-app title and body."""
    text = {
        FIELDS[field]: _render_field(cache, template, field, variables)
        for field in FIELDS
        if template.get(field) is not None
    }
    title = text[("in_app", "title")].strip()
    body = text[("in_app", "body")]
    rendered: dict[str, dict[str, str]] = {}
    if any(channel == "push" for channel, _ in text):
        rendered["push"] = {"title": text.get(("push", "title"), title), "body": text.get(("push", "body"), body)}
    if any(channel == "email" for channel, _ in text):
        rendered["email"] = {
            "subject": text.get(("email", "subject"), title),
            "text": text.get(("email", "text"), body),
            # The one place HTML is allowed; cleaned even so: a template is data an admin can change over REST.
            "html": nh3.clean(text.get(("email", "html"), str(escape(body)))),
        }
    return Rendering(title=title, body=body, rendered=rendered)


compiled_templates = CompiledTemplates()


def render_for(
    templates: Sequence[Mapping[str, Any]], name: str, locale: str, default_language: str, variables: Mapping[str, Any]
) -> Rendering:
    return render(compiled_templates, choose(templates, name, locale, default_language), variables)


async def render_notifications(
    pool: asyncpg.Pool, notification_ids: Sequence[str], secrets: SecretBox | None
) -> tuple[int, int]:
    """Renders the still-unrendered ones among these notifications; returns (rendered, failed)."""
    async with as_worker(pool) as conn:
        rows = await conn.fetch(query("templates_to_render"), notification_ids)
        rendered = failed = 0
        for row in rows:
            masked = sensitive.mask(sensitive.marked(row["templates"]), row["data"], row["template_vars"])
            sealed = None
            if masked.real is not None:
                try:
                    sealed = sensitive.seal(secrets, masked.real)
                except SecretsError as error:
                    # Never kept in clear: shown masked, the real values are gone (REST refuses such a send).
                    log.warning("notification %s: %s; its sensitive fields are dropped", row["id"], error)
            try:
                result = render_for(
                    row["templates"], row["template_id"], row["locale"], row["default_language"], masked.template_vars
                )
            except TemplateError as error:
                log.warning("notification %s: %s", row["id"], error)
                failed += await conn.fetchval(
                    query("render_failed"), row["id"], str(error), masked.data, masked.template_vars, sealed
                )
                continue
            rendered += await conn.fetchval(
                query("store_rendering"), row["id"], result.title, result.body, result.rendered,
                masked.data, masked.template_vars, sealed,
            )  # fmt: skip
    return rendered, failed


def register(app: procrastinate.App, pool: asyncpg.Pool, settings: Settings) -> None:
    """Declares the render_notifications task (queue "render") on the worker's app."""
    from notifyd.worker import DeliveryRetry  # noqa: PLC0415 - notifyd.worker calls this: import it late

    @app.task(name=TASK, queue=QUEUE, retry=DeliveryRetry())
    async def render_notifications_task(notification_ids: list[str]) -> None:
        await render_notifications(pool, notification_ids, settings.secrets)
