"""Named SQL queries from notifyd/db/statements/*.sql, so that SQL lives in .sql files and not in Python strings.

Each file holds queries that start with a line "-- name --" and a one-line description; names
are unique across the files.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_HEADER = re.compile(r"^-- (?P<name>[a-z_]+) --$", re.MULTILINE)


@functools.cache
def _all() -> dict[str, str]:
    found: dict[str, str] = {}
    for sql_file in sorted(resources.files("notifyd.db").joinpath("statements").iterdir(), key=lambda f: f.name):
        if not sql_file.name.endswith(".sql"):
            continue
        text = sql_file.read_text(encoding="utf-8")
        headers = list(_HEADER.finditer(text))
        for header, following in zip(headers, [*headers[1:], None], strict=True):
            if header["name"] in found:
                raise ValueError(f"query {header['name']!r} is defined twice (again in {sql_file.name})")
            body = text[header.end() : following.start() if following else len(text)]
            # The first line is the description comment.
            found[header["name"]] = "\n".join(body.strip().splitlines()[1:]).strip()
    return found


def query(name: str) -> str:
    """The SQL of the named query; a KeyError names the missing query."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in notifyd/db/statements/*.sql") from None
