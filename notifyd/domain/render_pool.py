"""Template rendering in a few pre-started child processes, so that an over-budget rendering can be killed.

The sandbox's own guards (notifyd.domain.templates) stop most over-budget templates with a clear message,
but one C-level operation (a huge join, sum or pow) cannot be interrupted inside a thread. So serve
and the worker never render on their event loop: a child renders, and one that has not answered
within the budget plus GRACE is killed and replaced. Children are spawned, not forked: a fork of a
process with an event loop, a database pool and sockets is not safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
import uuid
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from notifyd.core.config import Settings
from notifyd.domain import templates

_CONTEXT = multiprocessing.get_context("spawn")
# Seconds past the budget before a child is killed: the in-sandbox guards normally answer first.
GRACE = 0.5
# A child's address space: a rendering that allocates past it fails with MemoryError, not the host.
MEMORY_LIMIT = 1 << 30
KILLED = "it was stopped after {limit:g} s (TEMPLATE_RENDER_TIMEOUT)"


def _serve(conn: Connection, max_bytes: int, timeout: float) -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    cache = templates.CompiledTemplates()
    conn.send("ready")
    while True:
        try:
            template, variables = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", templates.render(cache, template, variables, max_bytes, timeout)))
        except templates.TemplateError as error:
            conn.send((type(error).__name__, str(error)))


class _Child:
    def __init__(self, settings: Settings) -> None:
        self.conn, child_end = _CONTEXT.Pipe()
        self.process: BaseProcess = _CONTEXT.Process(
            target=_serve,
            args=(child_end, settings.template_max_output_bytes, settings.template_render_timeout),
            daemon=True,
        )
        self.process.start()
        child_end.close()
        # Ready once it has imported the renderer: a budget counted from its start would include its imports.
        if self.conn.recv() != "ready":
            raise RuntimeError("a template rendering process did not start")

    def exchange(self, request: Any, wait: float) -> Any:
        """The child's answer, or None when it did not answer in time or died."""
        try:
            self.conn.send(request)
            return self.conn.recv() if self.conn.poll(wait) else None
        except (EOFError, OSError):
            return None

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class RenderPool:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self.kills = 0  # how many children were killed over budget (tests and figures watch it)

    async def _spawn(self) -> None:
        child = await asyncio.to_thread(_Child, self._settings)
        self._children.add(child)
        self._idle.put_nowait(child)

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self._settings.template_render_processes)))

    async def stop(self) -> None:
        for child in self._children:
            child.kill()
        self._children.clear()

    async def render(self, template: Mapping[str, Any], variables: Mapping[str, Any]) -> templates.Rendering:
        """templates.render in a child; BudgetError when the child had to be killed, TemplateError as it raised."""
        child = await self._idle.get()
        answer = await asyncio.to_thread(
            child.exchange, (dict(template), dict(variables)), self._settings.template_render_timeout + GRACE
        )
        if answer is None:
            self.kills += 1
            self._children.discard(child)
            await asyncio.to_thread(child.kill)
            replacement = asyncio.get_running_loop().create_task(self._spawn())
            self._spawning.add(replacement)
            replacement.add_done_callback(self._spawning.discard)
            where = {"name": template["name"], "language": template["language"], "field": "rendering"}
            error = KILLED.format(limit=self._settings.template_render_timeout)
            raise templates.BudgetError(templates.OVER_BUDGET.format(**where, error=error))
        self._idle.put_nowait(child)
        kind, value = answer
        if kind == "ok":
            assert isinstance(value, templates.Rendering)
            return value
        raise (templates.BudgetError if kind == "BudgetError" else templates.TemplateError)(value)

    async def check(self, template: Mapping[str, Any]) -> None:
        """Refuses (BudgetError) a template over budget with every declared variable an empty string.

        Other errors are not refused here: sample values of the wrong type say nothing about real sends.
        """
        sample = {name: "" for name in template.get("variables") or {}}
        try:
            await self.render({**template, "id": uuid.uuid4(), "version": 0}, sample)
        except templates.BudgetError:
            raise
        except templates.TemplateError:
            return
