"""The `notifyd` command: migrate, serve, worker, dev."""

from __future__ import annotations

import argparse
import asyncio
import sys

from notifyd import dev, server, supervisor, vapid, worker
from notifyd.config import Settings
from notifyd.localdb import owner_database
from notifyd.migrate import MigrationError, migrate_url


def cmd_migrate(_: argparse.Namespace) -> int:
    url, cluster = owner_database(dev.DEV_DATABASE)
    try:
        applied = asyncio.run(migrate_url(url))
    except MigrationError as error:
        print(f"notifyd migrate: {error}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"notifyd migrate: up to date ({len(applied)} new migration(s) applied)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.workers > 1:
        server.configure_logging()
        return supervisor.run(settings.host, settings.port, args.workers)
    return 0 if server.run(settings) else supervisor.STARTUP_FAILURE


def cmd_worker(_: argparse.Namespace) -> int:
    return worker.run(Settings.from_env())


def cmd_vapid_generate(_: argparse.Namespace) -> int:
    public_key, private_key = vapid.generate()
    print(f"VAPID_PUBLIC_KEY={public_key}\nVAPID_PRIVATE_KEY={private_key}")
    return 0


def cmd_dev(_: argparse.Namespace) -> int:
    return dev.run()


def _workers(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notifyd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the schema, functions and policies (idempotent)")
    serve_parser = commands.add_parser("serve", help="REST + WebSocket + LISTEN")
    serve_parser.add_argument("--workers", type=_workers, default=1, metavar="N",
                              help="N serve processes on the one port, each with its own pool and LISTEN "
                                   "connection; one that dies is started again (default 1)")  # fmt: skip
    commands.add_parser("worker", help="the Procrastinate worker with the periodic tasks")
    commands.add_parser("dev", help="everything in one process on an embedded default")
    vapid_parser = commands.add_parser("vapid", help="VAPID keys for Web Push")
    vapid_commands = vapid_parser.add_subparsers(dest="vapid_command", required=True)
    vapid_commands.add_parser("generate", help="print a new key pair as VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY lines")
    args = parser.parse_args(argv)
    handlers = {"migrate": cmd_migrate, "serve": cmd_serve, "worker": cmd_worker, "dev": cmd_dev,
                "vapid": cmd_vapid_generate}  # fmt: skip
    return handlers[args.command](args)
