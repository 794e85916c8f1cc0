"""The `notifyd` command: migrate, serve, worker, dev."""

from __future__ import annotations

import argparse
import asyncio
import sys

from notifyd import dev, operate, server, vapid, worker
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


def cmd_serve(_: argparse.Namespace) -> int:
    server.run(Settings.from_env())
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    return worker.run(Settings.from_env())


def cmd_vapid_generate(_: argparse.Namespace) -> int:
    public_key, private_key = vapid.generate()
    print(f"VAPID_PUBLIC_KEY={public_key}\nVAPID_PRIVATE_KEY={private_key}")
    return 0


def cmd_dev(_: argparse.Namespace) -> int:
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
    send.add_argument("--data", metavar="JSON", help="a JSON object, e.g. '{\"url\": \"/orders/1\"}'")
    send.add_argument("--channels", metavar="LIST", help="comma-separated: in_app,push,email (default: routing)")
    send.add_argument("--idempotency-key", help="a replay answers the first notification instead of a new one")
    explain = commands.add_parser("explain", help="why a notification went where it went, as JSON (DATABASE_URL)")
    explain.add_argument("notification_id", metavar="ID")
    commands.add_parser("status", help="queue depth, dead letters, oldest pending delivery, as JSON (DATABASE_URL)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notifyd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the schema, functions and policies (idempotent)")
    commands.add_parser("serve", help="REST + WebSocket + LISTEN")
    commands.add_parser("worker", help="the Procrastinate worker with the periodic tasks")
    commands.add_parser("dev", help="everything in one process on an embedded default")
    vapid_parser = commands.add_parser("vapid", help="VAPID keys for Web Push")
    vapid_commands = vapid_parser.add_subparsers(dest="vapid_command", required=True)
    vapid_commands.add_parser("generate", help="print a new key pair as VAPID_PUBLIC_KEY / VAPID_PRIVATE_KEY lines")
    add_operator_commands(commands)
    args = parser.parse_args(argv)
    handlers = {"migrate": cmd_migrate, "serve": cmd_serve, "worker": cmd_worker, "dev": cmd_dev,
                "vapid": cmd_vapid_generate, "send": cmd_send, "explain": cmd_explain,
                "status": cmd_status}  # fmt: skip
    return handlers[args.command](args)
