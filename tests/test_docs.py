"""The manual in docs/ builds with strict link checking, its REST reference comes from /openapi.json, and
the README stays a front page."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from notifyd.app import OPENAPI
from notifyd.realtime.session import CLOSE_AUTH_FAILED, CLOSE_POLICY, CLOSE_TOO_MANY_SESSIONS, CLOSE_TRY_AGAIN_LATER

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
MESSAGE_TOO_BIG = 1009  # WebSocket's own close code; uvicorn sends it for a frame over ws_max_size


def reference_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", ROOT / "docs" / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in OPENAPI["paths"].items() for method, op in ops.items()]


def test_the_manual_builds_with_strict_link_checking(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    reference = (tmp_path / "site" / "rest" / "index.html").read_text()
    assert "create_notification" in reference and "/api/v1/notifications/ws" in reference
    assert not (tmp_path / "site" / "hooks").exists(), "the hook is code, not a page"


def test_every_operation_has_a_tag_and_a_unique_snake_case_operation_id() -> None:
    ids = [op.get("operationId", "") for _, _, op in operations()]
    assert all(SNAKE_CASE.fullmatch(i) for i in ids), [i for i in ids if not SNAKE_CASE.fullmatch(i)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    declared = {tag["name"] for tag in OPENAPI["tags"]}
    untagged = [(method, path) for method, path, op in operations() if len(op.get("tags", [])) != 1]
    assert not untagged
    assert {op["tags"][0] for _, _, op in operations()} == declared, "every declared tag is used, and only those"


def test_the_document_names_its_server_and_the_websocket_protocol() -> None:
    assert OPENAPI["servers"] and all("url" in server for server in OPENAPI["servers"])
    websocket = OPENAPI["x-websocket"]
    assert websocket["tag"] in {tag["name"] for tag in OPENAPI["tags"]}
    codes = {CLOSE_AUTH_FAILED, CLOSE_POLICY, CLOSE_TOO_MANY_SESSIONS, CLOSE_TRY_AGAIN_LATER, MESSAGE_TOO_BIG}
    assert {int(code) for code in websocket["close_codes"]} == codes
    assert {"authenticate", "ping", "mark_read", "ack", "resume"} == set(websocket["client_messages"])
    assert {"notification", "unread_count", "read_status_updated", "resumed", "error"} <= set(
        websocket["server_messages"]
    )


def test_the_rest_reference_shows_every_operation_and_schema() -> None:
    rendered = reference_hook().render(OPENAPI)
    missing = [op["operationId"] for _, _, op in operations() if f"operationId `{op['operationId']}`" not in rendered]
    assert not missing
    assert all(f"{{#schema-{name.lower()}}}" in rendered for name in OPENAPI["components"]["schemas"])
    assert "| 4001 |" in rendered


def test_the_readme_is_a_front_page_with_the_two_commands_first() -> None:
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 150
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[0] == "## The two commands"
    commands = text.split("## The two commands", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[0] for line in commands.splitlines()] == ["./scripts/dev", "./scripts/test"]
    assert all((ROOT / "scripts" / name).is_file() for name in ("dev", "test"))
    for link in re.findall(r"\]\(([^)#]+\.md)", text):
        assert (ROOT / link).is_file(), link


def test_the_tour_shows_no_image_that_is_not_there() -> None:
    tour = (ROOT / "docs" / "tour.md").read_text()
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", tour):
        assert (ROOT / "docs" / image).is_file(), image
