"""Runs the pgTAP files of tests/sql, each in its own fresh database, and fails on any 'not ok'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

SQL_TESTS = sorted((Path(__file__).parent / "sql").glob("*.sql"))


@pytest.mark.parametrize("script", SQL_TESTS, ids=[p.stem for p in SQL_TESTS])
def test_pgtap(db: psycopg.Connection[Any], script: Path) -> None:
    db.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
    db.autocommit = False
    lines: list[str] = []
    with db.cursor() as cur:
        # Statements one at a time so that every TAP line is read; pgTAP's own plan/finish counts.
        cur.execute(script.read_text(encoding="utf-8"))
        while True:
            if cur.description is not None:
                lines.extend(str(row[0]) for row in cur.fetchall())
            if not cur.nextset():
                break
    db.rollback()
    tap = "\n".join(lines)
    assert lines, f"{script.name} printed nothing"
    assert "not ok" not in tap and "# Looks like" not in tap, tap
    assert lines[0].startswith("1.."), tap
