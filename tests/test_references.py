"""Comments and docstrings say their point in words: none cites a document the repository does not hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Requirement and security ids, seed documents, the contract and issue numbers live outside the repository.
CITATION = re.compile(r"REQ-|SEC-|seed 0|CONTRACT|issue [0-9]")
TEXT = {".py", ".sql", ".js", ".ts", ".html", ".txt", ".css", ".json"}


def citations(top: str) -> list[str]:
    found = []
    for path in sorted((ROOT / top).rglob("*")):
        relative = path.relative_to(ROOT)
        # notifyd/_schema is a link to sql/: read once, there.
        if "_schema" in relative.parts or "__pycache__" in relative.parts or path.suffix not in TEXT:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if CITATION.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    return found


def test_the_pattern_finds_a_citation() -> None:
    cited = ["see REQ-12", "SEC-001", "seed 03 §2", "CONTRACT §3", "issue 9"]
    assert all(CITATION.search(line) for line in cited)
    assert not CITATION.search("in sequence: the issue is 9 seconds of delay")


# Landed migrations never change (every install keeps their checksum), so the one that cites an id keeps it.
LANDED = {"sql/schema/0012_sensitive_fields.sql:1"}


# This file names the pattern it looks for.
ITSELF = "tests/test_references.py"


@pytest.mark.parametrize("top", ["notifyd", "sql", "bench", "tests", "scripts"])
def test_no_citation_of_an_outside_document(top: str) -> None:
    found = [line for line in citations(top) if line.split(": ", 1)[0] not in LANDED]
    assert [line for line in found if not line.startswith(ITSELF + ":")] == []
