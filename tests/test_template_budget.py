"""Templates within a budget: an output-size cap and a time limit, at save, in preview and in the worker.

The sandbox's guards are tested directly on several classes of over-budget templates; then through
a real `notifyd serve` (save and preview over REST, with the serve process's CPU and /healthz
watched while it happens) and a real `notifyd worker` rendering a template a DBA inserted in SQL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import psycopg
import pytest
from psycopg.types.json import Jsonb

from notifyd.domain import templates
from notifyd.rest import templates_api
from tests.server import ServerProcess, wait_for
from tests.test_templates import DBA, notification_row, recipient, sql_send

OVER = [
    "{{ 'x' * 50000000 }}",
    "{{ ['x'] * 50000000 }}",
    "{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{{ 'abcdefgh' }}{% endfor %}",
    "{% macro m(n) %}{{ m(n + 1) }}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "{{ 'x'|center(10**8) }}",
    "{{ '%*s' % (10**8, 'x') }}",
    "{{ '%100000000s' % 'x' }}",
    "{{ '{:>{}}'.format('x', 10**8) }}",
    "{{ 'x'|indent(10**8, first=True) }}",
    "{{ 'ab'|replace('', 'y' * 200000) }}",
    "{{ range(100000)|join('x' * 200000) }}",
    "{{ '%s'|format('x' * 200000) * 2 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
]
LIMITS = ("TEMPLATE_MAX_OUTPUT_BYTES", "TEMPLATE_RENDER_TIMEOUT")


def row(body: str, **fields: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "version": 1, "name": "big", "language": "en", "title_template": "t",
            "body_template": body, **fields}  # fmt: skip


@pytest.mark.parametrize("source", OVER)
def test_the_sandbox_refuses_templates_over_budget_in_time(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(templates.BudgetError) as refused:
        templates.render(templates.CompiledTemplates(), row(source), {})
    assert time.monotonic() - started < templates.DEFAULT_RENDER_TIMEOUT + 0.5
    message = str(refused.value)
    assert message.startswith('template "big" (en) body_template is over budget: ')
    assert any(limit in message for limit in LIMITS), message


def test_templates_within_budget_render_as_before() -> None:
    source = (
        "{{ '%d' % 5 }} {{ range(3)|join(',') }} {{ range(3)|length }} {{ 'a'|center(5) }}"
        "{% for i in range(3) %}{{ loop.index }}{% endfor %} {{ 'ab' * 2 }} {{ '{:>4}'.format('x') }}"
    )
    assert templates.render(templates.CompiledTemplates(), row(source), {}).body == "5 0,1,2 3   a  123 abab    x"
    # The cap counts every field of one rendering together, in UTF-8 bytes.
    wide = row("{{ 'é' * 600 }}", push_body_template="{{ 'é' * 600 }}")
    with pytest.raises(templates.BudgetError, match="more than 2000 bytes"):
        templates.render(templates.CompiledTemplates(), wide, {}, max_bytes=2000)
    assert templates.render(templates.CompiledTemplates(), wide, {}, max_bytes=2500).body == "é" * 600


# --- through a real serve --------------------------------------------------------------------------------


@pytest.fixture
def budget_api(own_server: Any) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    server: ServerProcess = own_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield server, client


def en_versions(client: httpx.Client) -> list[int]:
    versions = client.get(f"{templates_api.PREFIX}/mention", headers=DBA).json()["templates"]
    return [v["version"] for v in versions if v["language"] == "en"]


@pytest.mark.parametrize("source", OVER[:3] + OVER[5:7] + OVER[11:])
def test_saving_a_template_over_budget_is_a_422_naming_the_limit(
    budget_api: tuple[ServerProcess, httpx.Client], source: str
) -> None:
    _, client = budget_api
    new = {"type": "user", "title_template": "{{ actor }}", "body_template": source, "variables": {"actor": "who"}}
    refused = client.put(f"{templates_api.PREFIX}/mention/en", json=new, headers=DBA)
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert message.startswith('template "mention" (en) body_template is over budget: ')
    assert any(limit in message for limit in LIMITS), message
    assert en_versions(client) == [1]  # nothing saved


def insert_template(db: psycopg.Connection[Any], name: str, body: str) -> None:
    """As a DBA would, straight in SQL: the REST budget check never sees it."""
    db.execute(
        "INSERT INTO notify.notification_templates (name, type, language, title_template, body_template, variables,"
        " default_channels) VALUES (%s, 'security', 'en', 'Big', %s, %s, ARRAY['in_app'])",
        (name, body, Jsonb({})),
    )


def tree_cpu(pid: int) -> float:
    """CPU seconds of serve and its rendering children (a killed child's are gone, hence per-sample deltas)."""
    total = 0.0
    parent = psutil.Process(pid)
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


# A C-level loop the sandbox cannot interrupt: the child rendering it is killed.
UNINTERRUPTIBLE = "{{ (range(100000)|batch(1)|list)|sum(start=[])|length }}"


@pytest.mark.parametrize("source", [OVER[2], UNINTERRUPTIBLE])
def test_a_preview_over_budget_leaves_serve_responsive_and_idle(
    db: psycopg.Connection[Any], budget_api: tuple[ServerProcess, httpx.Client], source: str
) -> None:
    server, client = budget_api
    insert_template(db, "big", source)
    assert server.proc is not None
    pid = server.proc.pid
    health: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as prober:
            while not done.is_set():
                started = time.monotonic()
                assert prober.get("/healthz").status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.monotonic()
    try:
        preview = client.post(f"{templates_api.PREFIX}/big/preview", json={}, headers=DBA)
    finally:
        elapsed = time.monotonic() - started
        done.set()
        prober.join()
    assert preview.status_code == 422, preview.text
    assert "is over budget" in preview.json()["error"]["message"]
    assert "TEMPLATE_RENDER_TIMEOUT" in preview.json()["error"]["message"]
    assert elapsed < 1.0 + 1.0 + 1.0  # budget + grace before the kill + slack
    assert len(health) >= 5 and max(health) < 0.5, health  # served meanwhile
    # Idle again within budget + 1 s: the tree's CPU over the next second is little.
    time.sleep(max(0.0, started + 2.0 - time.monotonic()))
    before = tree_cpu(pid)
    time.sleep(1.0)
    assert tree_cpu(pid) - before < 0.3
    # And the pool still renders (a killed child was replaced).
    fine = client.post(f"{templates_api.PREFIX}/mention/preview", json={"variables": {
        "actor": "A", "where": "w", "excerpt": "e"}}, headers=DBA)  # fmt: skip
    assert fine.status_code == 200 and fine.json()["title"] == "A mentioned you in w"


# --- through a real worker -------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [OVER[0], OVER[2], UNINTERRUPTIBLE])
def test_the_worker_fails_a_notification_over_budget_with_a_reason(
    db: psycopg.Connection[Any], own_worker: Any, source: str
) -> None:
    own_worker(WORKER_POLL_INTERVAL="0.5")
    insert_template(db, "big", source)
    user = recipient(db)
    nid = sql_send(db, user, "big", {}, priority="critical")
    wait_for(lambda: notification_row(db, nid)["render_error"], 20, what="the render error")
    error = notification_row(db, nid)["render_error"]
    assert 'template "big" (en)' in error and "is over budget" in error
    in_app = db.execute(
        "SELECT status, reason FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'in_app'",
        (nid,),
    ).fetchone()
    assert in_app is not None and in_app[0] == "failed" and in_app[1] == f"template error: {error}", in_app
    # Not retried: the render job is gone and the worker renders the next one.
    ok = sql_send(db, user, "security_login", {"device": "F", "location": "B"}, priority="critical")
    wait_for(lambda: notification_row(db, ok)["title"] == "New sign-in from F", 20, what="the next rendering")
