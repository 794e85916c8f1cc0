"""Every named query in notifyd/db/statements/*.sql is used by notifyd (or the benchmarks), and every name used exists.

A name reaches `query()` as a string literal, as an f-string over a Literal type (the list sorts), or through one
of the helpers in TAKERS that pass their `name` argument on; a new such helper must be added there.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from notifyd.db import queries

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "notifyd").rglob("*.py"), *(ROOT / "bench").glob("*.py")])
# Functions that take a query name as their argument at this position and call query() with it.
TAKERS = {
    "query": 0,
    "found": 2,
    "in_org": 2,
    "audience_send": 2,
    "caller_value": 2,
    "caller_rows": 2,
    "found_value": 2,
    "as_owner": 3,
}


class _Uses(ast.NodeVisitor):
    def __init__(self, where: Path) -> None:
        self.where = where
        self.function = ""
        self.names: set[str] = set()
        self.patterns: list[str] = []
        self.unknown: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, call: ast.Call) -> None:
        self.generic_visit(call)
        position = TAKERS.get(call.func.id) if isinstance(call.func, ast.Name) else None
        if position is None or len(call.args) <= position:
            return
        arg = call.args[position]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            self.names.add(arg.value)
        elif isinstance(arg, ast.JoinedStr):
            parts = [
                re.escape(v.value) if isinstance(v, ast.Constant) and isinstance(v.value, str) else "[a-z_]+"
                for v in arg.values
            ]
            self.patterns.append("".join(parts))
        elif not (self.function in TAKERS and isinstance(arg, ast.Name) and arg.id == "name"):
            self.unknown.append(f"{self.where.relative_to(ROOT)}:{call.lineno}")


def uses() -> tuple[set[str], list[str], list[str]]:
    """(literal names, f-string patterns, where a name that is neither reaches a query taker)."""
    names: set[str] = set()
    patterns: list[str] = []
    unknown: list[str] = []
    for path in SOURCES:
        found = _Uses(path)
        found.visit(ast.parse(path.read_text(encoding="utf-8")))
        names |= found.names
        patterns += found.patterns
        unknown += found.unknown
    return names, patterns, unknown


def test_every_query_name_in_the_code_exists() -> None:
    defined = set(queries._all())
    names, patterns, unknown = uses()
    assert unknown == [], "a query name that this test cannot follow: add the helper to TAKERS"
    assert sorted(names - defined) == []
    assert [p for p in patterns if not any(re.fullmatch(p, name) for name in defined)] == []


def test_every_named_query_is_used() -> None:
    names, patterns, _ = uses()
    unused = [n for n in queries._all() if n not in names and not any(re.fullmatch(p, n) for p in patterns)]
    assert unused == []


def test_the_names_are_found_in_the_package_data() -> None:
    # The wheel carries the same directory (tests/test_wheel.py installs it); here, the checkout's files.
    files = sorted(p.name for p in (ROOT / "notifyd" / "db" / "statements").glob("*.sql"))
    assert files and len(queries._all()) >= len(files)
