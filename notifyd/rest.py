"""PLACEHOLDER (being replaced): the REST notification center."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
