"""The `notifyd` command: migrate, serve, worker, dev."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from notifyd import server
from notifyd.config import Settings
from notifyd.localdb import PrivateCluster, ensure_database, resolve_server
from notifyd.migrate import MigrationError, migrate_url

DEV_DATABASE = "notifyd"
EXIT_NOT_BUILT = 3


def _database_url() -> tuple[str, PrivateCluster | None]:
    """DATABASE_URL, else the `notifyd` database of the local or private server."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], None
    server, cluster = resolve_server()
    return asyncio.run(ensure_database(server, DEV_DATABASE)), cluster


def cmd_migrate(_: argparse.Namespace) -> int:
    url, _cluster = _database_url()
    try:
        applied = asyncio.run(migrate_url(url))
    except MigrationError as error:
        print(f"notifyd migrate: {error}", file=sys.stderr)
        return 1
    print(f"notifyd migrate: up to date ({len(applied)} new migration(s) applied)")
    return 0


def cmd_serve(_: argparse.Namespace) -> int:
    server.run(Settings.from_env())
    return 0


def cmd_not_built(args: argparse.Namespace) -> int:
    print(f"notifyd {args.command}: not built yet; see the open issues", file=sys.stderr)
    return EXIT_NOT_BUILT


def cmd_dev(_: argparse.Namespace) -> int:
    url, cluster = _database_url()
    try:
        asyncio.run(migrate_url(url))
        print("notifyd dev: database migrated; Ctrl-C stops", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        if cluster is not None:
            cluster.stop()
    print("notifyd dev: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notifyd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the schema, functions and policies (idempotent)")
    commands.add_parser("serve", help="REST + WebSocket + LISTEN")
    commands.add_parser("worker", help="the Procrastinate worker with the periodic tasks")
    commands.add_parser("dev", help="everything in one process on an embedded default")
    args = parser.parse_args(argv)
    handlers = {"migrate": cmd_migrate, "serve": cmd_serve, "worker": cmd_not_built, "dev": cmd_dev}
    if args.command == "dev":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    return handlers[args.command](args)
