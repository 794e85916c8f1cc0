"""Every SQL example of the README and the docs runs as written, against a migrated database.

The ```sql blocks of one page run in page order in one transaction (a later block may use what an earlier
one made), as the database owner, who is also the DBA the examples speak to; the examples switch roles
themselves. The transaction is rolled back at the end, so roles and tables they create are not kept. A block
whose first line is `-- expect error SQLSTATE` shows an error: it must fail with that SQLSTATE, and what it
did is undone before the next block. A statement followed by `-- result: VALUE` (on its last line or the next)
must answer one row of one column equal to VALUE (read as JSON when it is JSON), so a comment that states a
result cannot drift from what the example does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.DOTALL | re.MULTILINE)
EXPECT_ERROR = re.compile(r"--\s*expect error\s+([0-9A-Z]{5})\b")
RESULT = re.compile(r"--\s*result:\s*(.+)$")


def sql_blocks(page: Path) -> list[str]:
    return SQL_BLOCK.findall(page.read_text())


def expected_error(block: str) -> str | None:
    first = block.lstrip().split("\n", 1)[0]
    found = EXPECT_ERROR.match(first)
    return found.group(1) if found else None


def code_of(line: str) -> str:
    """The line without its `--` comment (a `--` inside a string literal is not one)."""
    quoted = False
    for at, char in enumerate(line):
        if char == "'":
            quoted = not quoted
        elif not quoted and line.startswith("--", at):
            return line[:at]
    return line


def statements(block: str) -> list[tuple[str, str | None]]:
    """The block's statements in order, each with the result its `-- result:` comment states (or None)."""
    found: list[tuple[str, str | None]] = []
    current: list[str] = []
    for line in block.splitlines():
        result = RESULT.search(line)
        if not current and result and found and not code_of(line).strip():
            found[-1] = (found[-1][0], result.group(1).strip())
            continue
        current.append(line)
        if code_of(line).rstrip().endswith(";"):
            found.append(("\n".join(current), result.group(1).strip() if result else None))
            current = []
    if any(code_of(line).strip() for line in current):
        found.append(("\n".join(current), None))
    return found


def same(value: Any, stated: str) -> bool:
    try:
        return bool(json.loads(stated) == value)
    except ValueError:
        return str(value) == stated


PAGES_WITH_SQL = [page for page in PAGES if sql_blocks(page)]


def test_the_examples_are_found() -> None:
    """The pages that show SQL are all collected (a changed fence would silently skip them)."""
    names = {page.relative_to(ROOT).as_posix() for page in PAGES_WITH_SQL}
    assert {"docs/sql-api.md", "docs/channels.md", "docs/templates.md", "docs/security.md"} <= names
    assert sum(len(sql_blocks(page)) for page in PAGES_WITH_SQL) >= 10


@pytest.mark.parametrize("page", PAGES_WITH_SQL, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_sql_example_runs(db: psycopg.Connection[Any], page: Path) -> None:
    db.autocommit = False
    try:
        with db.cursor() as cur:
            for number, block in enumerate(sql_blocks(page), start=1):
                where = f"{page.name}, SQL block {number}:\n{block}"
                sqlstate = expected_error(block)
                if sqlstate is None:
                    for statement, stated in statements(block):
                        cur.execute(statement)
                        if stated is not None:
                            rows = cur.fetchall()
                            assert len(rows) == 1 and len(rows[0]) == 1, f"{where}\n{statement} gave {rows}"
                            assert same(rows[0][0], stated), f"{where}\n{statement} gave {rows[0][0]!r}, not {stated}"
                    continue
                cur.execute("SAVEPOINT example")
                with pytest.raises(psycopg.Error) as refused:
                    cur.execute(block)
                assert refused.value.sqlstate == sqlstate, f"{where}\nfailed with {refused.value!r}"
                cur.execute("ROLLBACK TO SAVEPOINT example")
    finally:
        db.rollback()
        db.autocommit = True


@pytest.mark.parametrize(
    ("block", "sqlstate"),
    [("-- expect error 22023\nSELECT 1;", "22023"), ("SELECT 1; -- expect error 22023", None), ("SELECT 1;", None)],
)
def test_the_error_marker_is_read_from_the_first_line_only(block: str, sqlstate: str | None) -> None:
    assert expected_error(block) == sqlstate


def test_statements_are_split_at_semicolons_with_their_stated_results() -> None:
    block = (
        "SELECT 1;  -- result: 1\n"
        "SELECT ';' -- a comment; not the end\n"
        "    , 2;\n"
        '-- result: [";", 2]\n'
        "-- a comment of its own\n"
        "SELECT '--' AS dashes;"
    )
    assert statements(block) == [
        ("SELECT 1;  -- result: 1", "1"),
        ("SELECT ';' -- a comment; not the end\n    , 2;", '[";", 2]'),
        ("-- a comment of its own\nSELECT '--' AS dashes;", None),
    ]
    assert same({"count": 3}, '{"count": 3}') and same(2, "2") and same("text", "text")
    assert not same({"count": 2}, '{"count": 3}')
