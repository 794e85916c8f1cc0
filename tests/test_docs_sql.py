"""Every SQL example of the README and the docs runs as written, against a migrated database.

The ```sql blocks of one page run in page order in one transaction (a later block may use what an earlier
one made), as the database owner, who is also the DBA the examples speak to; the examples switch roles
themselves. The transaction is rolled back at the end, so roles and tables they create are not kept. A block
whose first line is `-- expect error SQLSTATE` shows an error: it must fail with that SQLSTATE, and what it
did is undone before the next block.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.DOTALL | re.MULTILINE)
EXPECT_ERROR = re.compile(r"--\s*expect error\s+([0-9A-Z]{5})\b")


def sql_blocks(page: Path) -> list[str]:
    return SQL_BLOCK.findall(page.read_text())


def expected_error(block: str) -> str | None:
    first = block.lstrip().split("\n", 1)[0]
    found = EXPECT_ERROR.match(first)
    return found.group(1) if found else None


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
                    cur.execute(block)
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
