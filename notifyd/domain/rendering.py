"""Rendering stored notifications: the worker's render_notifications task masks and seals their sensitive fields,
picks the template in the recipient's language and renders it in the render pool's children."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
import procrastinate

from notifyd.core.config import Settings
from notifyd.core.crypto import SecretBox, SecretsError
from notifyd.db.pool import as_worker
from notifyd.db.queries import query
from notifyd.domain import sensitive
from notifyd.domain.deliveries import DeliveryRetry
from notifyd.domain.render_pool import RenderPool
from notifyd.domain.templates import TemplateError, choose

log = logging.getLogger("notifyd.worker")

QUEUE = "render"
TASK = "render_notifications"


async def render_notifications(
    pool: asyncpg.Pool, notification_ids: Sequence[str], secrets: SecretBox | None, render_pool: RenderPool
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
                chosen = choose(row["templates"], row["template_id"], row["locale"], row["default_language"])
                result = await render_pool.render(chosen, masked.template_vars)
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


def register(app: procrastinate.App, pool: asyncpg.Pool, settings: Settings, render_pool: RenderPool) -> None:
    """Declares the render_notifications task (queue "render") on the worker's app."""

    @app.task(name=TASK, queue=QUEUE, retry=DeliveryRetry())
    async def render_notifications_task(notification_ids: list[str]) -> None:
        await render_notifications(pool, notification_ids, settings.secrets, render_pool)
