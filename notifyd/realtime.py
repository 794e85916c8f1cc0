"""PLACEHOLDER (being replaced): the LISTEN hub and the WebSocket endpoint."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []


class Hub:
    def __init__(self, settings: Any, pool: Any, metrics: Any) -> None:
        self.is_listening = True

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
