"""Named SQL queries from queries.sql, so that SQL lives in .sql files and not in Python strings."""

from __future__ import annotations

import functools
import re
from importlib import resources

_HEADER = re.compile(r"^-- (?P<name>[a-z_]+) --$", re.MULTILINE)


@functools.cache
def _all() -> dict[str, str]:
    text = resources.files("notifyd").joinpath("queries.sql").read_text(encoding="utf-8")
    headers = list(_HEADER.finditer(text))
    found: dict[str, str] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        body = text[header.end() : following.start() if following else len(text)]
        lines = body.strip().splitlines()
        # The first line is the description comment.
        found[header["name"]] = "\n".join(lines[1:]).strip()
    return found


def query(name: str) -> str:
    """The SQL of the named query; a KeyError names the missing query."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in notifyd/queries.sql") from None
