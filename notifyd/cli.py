"""The `notifyd` command: migrate, serve, worker, dev."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from notifyd import __version__, operate
from notifyd.core.config import DEV, MIGRATE, SERVE, WORKER, Settings, help_text, variables_of
from notifyd.core.requestid import configure_logging
from notifyd.db import startup
from notifyd.db.localdb import owner_database
from notifyd.db.migrate import MigrationError, migrate_url, refusal_of_changed, status_url
from notifyd.domain import vapid

# Each command imports its own process late: the worker does not load the HTTP stack (Starlette, the routes, the
# OpenAPI document) nor serve the worker's (Procrastinate), a second less per start.

# `notifyd migrate --check` exit statuses, for deploy scripts.
CHECK_UP_TO_DATE, CHECK_PENDING, CHECK_FAILED = 0, 1, 2
# serve and worker exit with this when the database is not migrated for them.
EXIT_NOT_MIGRATED = 3


def cmd_migrate(args: argparse.Namespace) -> int:
    from notifyd import dev

    url, cluster = owner_database(dev.DEV_DATABASE)
    try:
        if args.check or args.dry_run:
            return _report_pending(url, check=args.check)
        applied = asyncio.run(migrate_url(url))
    except (MigrationError, OSError, asyncpg.PostgresError) as error:
        print(f"notifyd migrate: {error}", file=sys.stderr)
        return CHECK_FAILED if args.check else 1
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"notifyd migrate: up to date ({len(applied)} new migration(s) applied)")
    return 0


def _report_pending(url: str, *, check: bool) -> int:
    """--check and --dry-run: what migrate would apply, changing nothing."""
    found = asyncio.run(status_url(url))
    problem = refusal_of_changed(found)
    if problem is not None:
        raise MigrationError(problem)
    for name in found.unknown:
        print(f"newer than this notifyd (already applied): {name}")
    if not found.pending:
        print("notifyd migrate: up to date (nothing to apply)")
        return CHECK_UP_TO_DATE
    for name in found.pending:
        print(f"would apply: {name}")
    print("then would re-apply: functions/*.sql, rls/*.sql")
    return CHECK_PENDING if check else 0


def _check_database(settings: Settings) -> int | None:
    """Refuses (an exit status) a database this notifyd cannot run on; None: start."""
    configure_logging()
    try:
        asyncio.run(startup.check(settings.direct_url))
    except startup.NotMigrated as error:
        print(f"notifyd: {error}", file=sys.stderr)
        return EXIT_NOT_MIGRATED
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    from notifyd import server, supervisor

    settings = Settings.from_env()
    refused = _check_database(settings)
    if refused is not None:
        return refused
    if args.workers > 1:
        return supervisor.run(settings.host, settings.port, args.workers)
    return 0 if server.run(settings) else supervisor.STARTUP_FAILURE


def cmd_worker(_: argparse.Namespace) -> int:
    from notifyd.worker import runner as worker

    settings = Settings.from_env()
    refused = _check_database(settings)
    if refused is not None:
        return refused
    return worker.run(settings)


def cmd_vapid_generate(_: argparse.Namespace) -> int:
    public_key, private_key = vapid.generate()
    print(f"VAPID_PUBLIC_KEY={public_key}\nVAPID_PRIVATE_KEY={private_key}")
    return 0


def cmd_dev(_: argparse.Namespace) -> int:
    from notifyd import dev

    return dev.run()


def cmd_send(args: argparse.Namespace) -> int:
    try:
        notification = operate.notification_of(
            args.to, args.type, args.title, args.body, args.priority, args.data, args.channels
        )
        operate.print_json(operate.send(notification, args.idempotency_key))
    except operate.OperatorError as error:
        return operate.fail("send", error)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        operate.print_json(operate.explain(args.notification_id))
    except operate.OperatorError as error:
        return operate.fail("explain", error)
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    try:
        operate.print_json(operate.status())
    except operate.OperatorError as error:
        return operate.fail("status", error)
    return 0


def add_operator_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """send, explain, status: for operators on the host, over SQL with DATABASE_URL (notifyd.operate)."""
    send = commands.add_parser("send", help="send one notification as the service notifyd-cli (reads DATABASE_URL)")
    send.add_argument("--to", required=True, metavar="USER_ID", help="the recipient's user id (a uuid)")
    send.add_argument("--type", required=True, help="the notification type, e.g. system")
    send.add_argument("--title", required=True)
    send.add_argument("--body")
    send.add_argument("--priority", default="normal", help="critical, high, normal (default) or low")
    send.add_argument("--data", metavar="JSON", help='a JSON object, e.g. \'{"url": "/orders/1"}\'')
    send.add_argument("--channels", metavar="LIST", help="comma-separated: in_app,push,email (default: routing)")
    send.add_argument(
        "--idempotency-key", help="a replay answers the first notification; another request with the key is refused"
    )
    explain = commands.add_parser("explain", help="why a notification went where it went, as JSON (DATABASE_URL)")
    explain.add_argument("notification_id", metavar="ID")
    commands.add_parser("status", help="queue depth, dead letters, oldest pending delivery, as JSON (DATABASE_URL)")


def _workers(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notifyd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"notifyd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_parser = _command(commands, MIGRATE, "apply the schema, functions and policies (idempotent)")
    modes = migrate_parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--check",
        action="store_true",
        help=f"apply nothing; exit {CHECK_UP_TO_DATE} if up to date, {CHECK_PENDING} if migrations "
        f"are pending (printed), {CHECK_FAILED} if the database cannot be read",
    )
    modes.add_argument("--dry-run", action="store_true", help="print what would apply, change nothing")
    serve_parser = _command(commands, SERVE, "REST + WebSocket + LISTEN")
    serve_parser.add_argument("--workers", type=_workers, default=1, metavar="N",
                              help="N serve processes on the one port, each with its own pool and LISTEN "
                                   "connection; one that dies is started again (default 1)")  # fmt: skip
    _command(commands, WORKER, "the Procrastinate worker with the periodic tasks")
    _command(commands, DEV, "everything in one process on an embedded default")
    vapid_parser = commands.add_parser("vapid", help="VAPID keys for Web Push")
    vapid_commands = vapid_parser.add_subparsers(dest="vapid_command", required=True)
    vapid_commands.add_parser("generate", help="print a new key pair as VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY lines")
    add_operator_commands(commands)
    args = parser.parse_args(argv)
    handlers = {"migrate": cmd_migrate, "serve": cmd_serve, "worker": cmd_worker, "dev": cmd_dev,
                "vapid": cmd_vapid_generate, "send": cmd_send, "explain": cmd_explain,
                "status": cmd_status}  # fmt: skip
    return handlers[args.command](args)


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with the environment variables it reads."""
    return commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=help_text(variables_of(name)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
