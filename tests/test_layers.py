"""notifyd's layers import only downward, route modules are imported by the app alone, and no imports go in a circle.

The one declaration of the layer order is LAYERS below: a module belongs to the entry that names it or its package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "notifyd"

# Siblings that do not import each other: three surfaces over the same layers.
SURFACES = ("notifyd.rest", "notifyd.realtime", "notifyd.worker")
LAYERS: list[tuple[str, ...]] = [
    ("notifyd.core",),  # settings, crypto, redaction, request ids, metrics, callers, wire models
    ("notifyd.db",),  # pools and roles, named queries, migrations, local clusters, start-up checks
    ("notifyd.domain",),  # planning results and channels, rendering, tracking tokens, sealing, VAPID, digests
    ("notifyd.http",),  # what every HTTP surface shares: caller checks, errors, OpenAPI, middleware
    SURFACES,  # REST routes, WebSocket and SSE sessions, the worker's tasks
    ("notifyd.app", "notifyd.server", "notifyd.supervisor", "notifyd.dev", "notifyd.operate", "notifyd.cli",
     "notifyd.__main__"),  # the processes and the command line
]  # fmt: skip
ROUTES = ("notifyd.rest", "notifyd.realtime.sse", "notifyd.realtime.websocket")
APP = "notifyd.app"
# The package itself (its version only) is below everything; the SDK sees the wire models and nothing else.
ALONE = {"notifyd": set(), "notifyd.client": {"notifyd.core.models"}}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Every notifyd module each module imports, late and TYPE_CHECKING imports included."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = (module if path.name == "__init__.py" else module.rpartition(".")[0]).split(".")
                    base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
                edges.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
        graph[module] = {edge for edge in edges if edge in known and edge != module}
    return graph


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the package or module of LAYERS that holds it)."""
    for index, members in enumerate(LAYERS):
        for member in members:
            if _within(module, member):
                return index, member
    raise LookupError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if module in ALONE or target in ALONE:
                if module in ALONE and target not in ALONE[module]:
                    found.append(f"{module} imports {target}: it may import only {sorted(ALONE[module])}")
                continue
            (mine, my_home), (theirs, their_home) = layer_of(module), layer_of(target)
            if theirs > mine or (LAYERS[mine] is SURFACES and theirs == mine and my_home != their_home):
                found.append(f"{module} imports {target}, which is above it or beside it")
            if any(_within(target, route) for route in ROUTES) and module != APP:
                found.append(f"{module} imports the route module {target}: only {APP} does")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_layer() -> None:
    unplaced = [m for m in modules() if m not in ALONE and not any(_within(m, p) for ps in LAYERS for p in ps)]
    assert unplaced == []


def test_imports_go_only_downward() -> None:
    assert violations(import_graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"notifyd.db.pool": {"notifyd.domain.deliveries"}, "notifyd.domain.deliveries": set()}, "above it"),
        ({"notifyd.worker.tasks": {"notifyd.realtime.hub"}, "notifyd.realtime.hub": set()}, "beside it"),
        ({"notifyd.realtime.sse": {"notifyd.rest.health"}, "notifyd.rest.health": set()}, "route module"),
        ({"notifyd.rest.health": {"notifyd.rest.history_api"}, "notifyd.rest.history_api": set()}, "route module"),
        ({"notifyd.client": {"notifyd.core.auth"}, "notifyd.core.auth": set()}, "may import only"),
    ],
)
def test_the_check_sees_a_wrong_import(graph: dict[str, set[str]], expected: str) -> None:
    assert any(expected in line for line in violations(graph))


def test_the_check_sees_a_cycle() -> None:
    graph = {"notifyd.domain.a": {"notifyd.domain.b"}, "notifyd.domain.b": {"notifyd.domain.c"},
             "notifyd.domain.c": {"notifyd.domain.a"}, "notifyd.domain.d": {"notifyd.domain.a"}}  # fmt: skip
    assert cycles(graph) == [["notifyd.domain.a", "notifyd.domain.b", "notifyd.domain.c"]]
