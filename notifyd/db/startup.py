"""What `serve` and `worker` check before they start: the database is migrated, and who they log in as.

Rolling upgrades migrate first and replace the processes afterwards, so a process may meet a
database migrated by a newer notifyd. Migrations only add (landed files never change, and a
release keeps what the previous one used), so it runs, warning which migrations it does not
know. A database that lacks one of the process's own migrations is refused: the code would
call what is not there.
"""

from __future__ import annotations

import logging

import asyncpg

from notifyd.db.migrate import Status, refusal_of_changed, status
from notifyd.db.queries import query

log = logging.getLogger("notifyd.startup")


class NotMigrated(Exception):
    """The database lacks migrations this notifyd needs."""


def refusal(found: Status) -> str | None:
    """Why a process must not start against a database in this state, or None."""
    changed = refusal_of_changed(found)
    if changed is not None:
        return changed
    if found.pending:
        return f"the database lacks migrations {', '.join(found.pending)}: run notifyd migrate"
    return None


async def check(database_url: str) -> None:
    """Raises NotMigrated when the database is not ready; logs a warning for each risk it runs anyway."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            if await conn.fetchval(query("ledger_exists")):
                await conn.fetchval(query("read_ledger_as_worker"))
            try:
                found = await status(conn)
            except asyncpg.InsufficientPrivilegeError as error:
                raise NotMigrated(f"cannot read the migration ledger ({error}): run notifyd migrate") from error
        reason = refusal(found)
        if reason is not None:
            raise NotMigrated(reason)
        if found.unknown:
            log.warning(
                "the database ran migrations this notifyd does not know (%s): a newer notifyd migrated it; "
                "running, as migrations only add",
                ", ".join(found.unknown),
            )
        privileges = await conn.fetchrow(query("login_privileges"))
    finally:
        await conn.close()
    bypasses = [name for name in ("superuser", "owner", "bypassrls") if privileges[name]]
    if bypasses:
        log.warning(
            "logged in as a role that bypasses row-level security (%s): use a login role that only holds "
            "the notify roles",
            ", ".join({"owner": "the database owner", "bypassrls": "BYPASSRLS"}.get(b, b) for b in bypasses),
        )
