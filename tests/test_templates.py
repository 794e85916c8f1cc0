"""Templates: the sandboxed renderer, language fallback, rendering of SQL sends by notifyd, REST.

The renderer is tested directly; the rest against real PostgreSQL, a real `notifyd serve`, and the
real `notifyd worker` on the test's own database (see `render_worker`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from notifyd.domain import templates
from notifyd.rest import templates_api
from tests.conftest import service_conn, user_conn
from tests.server import ServerProcess, WorkerProcess, make_token, wait_for
from tests.standins.resend import ResendService
from tests.test_email import mail_env
from tests.test_realtime import notifications, recv_until, settle, ws_for
from tests.test_webpush import Stack, stack  # noqa: F401 - the Web Push stack fixture

SERVICE = {"Authorization": f"Bearer {make_token('svc', role='service')}"}
DBA = {"Authorization": f"Bearer {make_token('dba', role='admin')}"}
ORG_ADMIN = {"Authorization": f"Bearer {make_token('boss', role='admin', org_id=str(uuid.uuid4()))}"}
LOGIN = {"device": "Firefox", "location": "Berlin"}


def template(**fields: Any) -> dict[str, Any]:
    """A template row as the database hands it to the renderer."""
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()), "name": "t", "language": "en", "version": 1, "variables": {"who": ""},
        "title_template": "Hi {{ who }}", "body_template": "{{ who }} <b>", **fields,
    }  # fmt: skip
    return row


def render(row: dict[str, Any], **variables: Any) -> templates.Rendering:
    return templates.render(templates.CompiledTemplates(), row, variables)


# --- the renderer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "languages", "chosen"),
    [
        ("pt-BR", ["en", "pt", "pt-BR"], "pt-BR"),
        ("pt-BR", ["en", "pt"], "pt"),
        ("pt-BR", ["en", "de"], "en"),
        ("pt", ["en", "pt-BR"], "en"),  # a regional version is not a language's
    ],
)
def test_language_fallback_chain(locale: str, languages: list[str], chosen: str) -> None:
    rows = [template(language=language) for language in languages]
    assert templates.choose(rows, "t", locale, "en")["language"] == chosen


def test_no_language_in_the_chain_is_a_clear_error() -> None:
    with pytest.raises(templates.TemplateError, match=r'^template "t" has no version in pt-BR, pt, en$'):
        templates.choose([template(language="de")], "t", "pt-BR", "en")
    with pytest.raises(templates.TemplateError, match='^template "t" does not exist in any language$'):
        templates.choose([], "t", "en", "en")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ who.__class__ }}",
        "{{ (1).__class__.__subclasses__() }}",
        "{{ lipsum.__globals__['os'] }}",
        '{{ who|attr("__class__") }}',
        "{{ self.__dict__ }}",
        '{{ "{0.__class__}".format(who) }}',
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    refused = r"^template \"t\" \(en\) title_template was refused by the sandbox: access to attribute '__\w+__' of "
    with pytest.raises(templates.TemplateError, match=refused + r"'\w+' object is unsafe\.$"):
        render(template(title_template=source), who="x")


def test_html_is_escaped_in_the_email_and_text_is_untouched() -> None:
    row = template(
        email_subject_template="{{ who }} says hi",
        email_html_template="<p>{{ who }}</p>",
        email_text_template="{{ who }} & co",
    )
    rendering = render(row, who="<script>alert(1)</script> & Ann")
    assert rendering.rendered["email"]["html"] == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; Ann</p>"
    assert rendering.rendered["email"]["text"] == "<script>alert(1)</script> & Ann & co"
    assert rendering.rendered["email"]["subject"] == "<script>alert(1)</script> & Ann says hi"
    assert rendering.title == "Hi <script>alert(1)</script> & Ann"
    assert rendering.body == "<script>alert(1)</script> & Ann <b>"
    assert "push" not in rendering.rendered  # no push template: push shows title and body


@pytest.mark.parametrize(
    ("html", "who", "kept", "gone"),
    [
        ("<p>{{ who }}</p><script>steal()</script>", "Ann", "<p>Ann</p>", "<script"),
        ('<img src="x" onerror="steal()">{{ who }}', "Ann", "Ann", "onerror"),
        ('<a href="javascript:steal()">{{ who }}</a>', "Ann", "Ann", "javascript:"),
        ("<p>{{ who | safe }}</p>", "Ann<iframe src=//evil></iframe>", "<p>Ann</p>", "<iframe"),
    ],
)
def test_a_templates_own_html_is_cleaned_too(html: str, who: str, kept: str, gone: str) -> None:
    # A template is data an admin changes over REST: what it may do in an e-mail is limited all the same.
    rendering = render(template(email_html_template=html), who=who)
    assert kept in rendering.rendered["email"]["html"] and gone not in rendering.rendered["email"]["html"]


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(templates.TemplateError, match=r"""title_template: 'who' is undefined$"""):
        render(template())


def test_the_cache_follows_a_new_version() -> None:
    cache = templates.CompiledTemplates()
    first = template()
    assert templates.render(cache, first, {"who": "A"}).title == "Hi A"
    assert templates.render(cache, first, {"who": "B"}).title == "Hi B"
    assert cache.compilations == 2  # title and body, once
    newer = {**first, "version": 2, "title_template": "Hello {{ who }}"}
    assert templates.render(cache, newer, {"who": "A"}).title == "Hello A"
    assert cache.compilations == 4


def test_check_refuses_bad_syntax_and_undeclared_variables() -> None:
    with pytest.raises(templates.TemplateError, match=r"title_template does not compile"):
        templates.check(template(title_template="{{ who"))
    with pytest.raises(templates.TemplateError, match=r"body_template uses undeclared variables: other, when$"):
        templates.check(template(body_template="{{ when }} {{ other }} {{ range(2) | list }}"))
    templates.check(template())


# --- rendering SQL sends ----------------------------------------------------------------------------------


@pytest.fixture
def render_worker(own_worker: Any) -> None:
    """A real `notifyd worker` on the test's own database: it renders what SQL sends with a template."""
    own_worker(WORKER_POLL_INTERVAL="0.5")


def recipient(db: psycopg.Connection[Any], locale: str = "en", email: str | None = None) -> uuid.UUID:
    user = uuid.uuid4()
    db.execute("INSERT INTO notify.recipients (user_id, locale, email) VALUES (%s, %s, %s)", (user, locale, email))
    return user


def sql_send(db: psycopg.Connection[Any], user: uuid.UUID, name: str, variables: dict[str, Any], **kw: Any) -> str:
    notification_type = kw.pop("type", "security")
    args = "".join(f", {k} => %({k})s" for k in kw)
    conn = service_conn(db)
    try:
        row = conn.execute(
            f"SELECT notify.send(%(user)s, %(type)s, template => %(name)s, template_vars => %(vars)s{args})",
            {"user": user, "type": notification_type, "name": name, "vars": Jsonb(variables), **kw},
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    return str(row[0])


def notification_row(db: psycopg.Connection[Any], notification_id: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT title, body, rendered, render_error, held_until::text FROM notify.notifications WHERE id = %s",
        (notification_id,),
    ).fetchone()
    assert row is not None
    return dict(zip(("title", "body", "rendered", "render_error", "held_until"), row, strict=True))


def test_unknown_template_from_sql_is_refused_at_create(db: psycopg.Connection[Any]) -> None:
    user = recipient(db)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='template "nope" does not exist in any language'):
        sql_send(db, user, "nope", {})
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (0,)


async def test_a_template_sent_from_sql_arrives_rendered_on_the_websocket(
    db: psycopg.Connection[Any], own_server: Any, render_worker: None
) -> None:
    server: ServerProcess = own_server()
    user = recipient(db, locale="de-AT")
    async with ws_for(server, user) as ws:
        await settle(ws)
        nid = await asyncio.to_thread(sql_send, db, user, "security_login", LOGIN, priority="critical")
        events = await recv_until(ws, "notification", timeout=10)
    [data] = notifications(events)
    assert data["id"] == nid
    assert data["title"] == "Neue Anmeldung von Firefox"  # de-AT → de
    assert data["body"] == "Jemand hat sich von Firefox in Berlin angemeldet."
    row = notification_row(db, nid)
    assert row["held_until"] is None and row["rendered"]["push"] == {
        "title": "Neue Anmeldung",
        "body": "Firefox in Berlin",
    }
    in_app = db.execute(
        "SELECT status, reason FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'in_app'",
        (nid,),
    ).fetchone()
    assert in_app == ("sent", None)


async def test_a_template_that_cannot_render_stays_hidden_and_explains_why(
    db: psycopg.Connection[Any], own_server: Any, render_worker: None
) -> None:
    server: ServerProcess = own_server()
    user = recipient(db)
    nid = sql_send(db, user, "security_login", {"device": "Firefox"}, priority="critical")
    wait_for(lambda: notification_row(db, nid)["render_error"], 15, what="the render error")
    assert "'location' is undefined" in notification_row(db, nid)["render_error"]
    token = {"Authorization": f"Bearer {make_token(user)}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        listed = (await client.get("/api/v1/notifications", headers=token)).json()
        assert listed["items"] == [] and listed["unread_count"] == 0
        assert (await client.get(f"/api/v1/notifications/{nid}", headers=token)).status_code == 404
        explained = (await client.get(f"/api/v1/notifications/{nid}/explain", headers=SERVICE)).json()
    reasons = [d.get("reason") for d in explained["decisions"] if d["channel"] == "in_app"]
    assert reasons == ["template error: template \"security_login\" (en) body_template: 'location' is undefined"], (
        explained
    )
    conn = user_conn(db, str(user))
    assert conn.execute("SELECT notify.unread_count() -> 'count'").fetchone() == (0,)
    conn.close()


def test_the_email_of_a_template_as_resend_receives_it(
    db: psycopg.Connection[Any], own_worker: Any, resend_service: ResendService
) -> None:
    privacy = "https://acme.example/privacy"
    proc: WorkerProcess = own_worker(**mail_env(resend_service, PRIVACY_POLICY_URL=privacy))
    user = recipient(db, email="ann@example.com")
    sql_send(db, user, "security_login", {"device": "<img src=x>", "location": "Köln"}, priority="critical")
    [email] = wait_for(lambda: resend_service.emails, 15, what="the e-mail") or [None]
    assert email.subject == "New sign-in to your account", proc.log()
    assert "<strong>&lt;img src=x&gt;</strong> in Köln" in email.html
    assert "from <img src=x> in Köln. If this was not you" in email.text
    assert "/unsubscribe/" in email.html and "/unsubscribe/" in email.text
    assert "Privacy policy" in email.html and privacy in email.html


def test_a_push_of_a_template_shows_its_push_text(
    db: psycopg.Connection[Any],
    stack: Stack,  # noqa: F811 - its worker renders too
) -> None:
    user = recipient(db, locale="de")
    stack.subscribe(user)
    nid = sql_send(db, user, "task_assigned", {"task_title": "Fix <b>", "assigned_by": "Ann"}, type="task",
                   priority="high", channels=["in_app", "push"])  # fmt: skip
    message = stack.message(nid)
    assert message.json is not None
    assert (message.json["title"], message.json["body"]) == ("Neue Aufgabe: Fix <b>", "Ann hat sie Ihnen zugewiesen.")


# --- REST -------------------------------------------------------------------------------------------------


def test_rest_renders_before_insert_and_refuses_an_unknown_template(
    db: psycopg.Connection[Any], own_server: Any
) -> None:
    server: ServerProcess = own_server()
    user = recipient(db, locale="de")
    body = {"user_id": str(user), "type": "task", "template_id": "task_assigned",
            "template_vars": {"task_title": "Fix <b>", "assigned_by": "Ann"}}  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=10) as client:
        created = client.post("/api/v1/notifications", json=body, headers=SERVICE)
        assert created.status_code == 202, created.text
        unknown = client.post("/api/v1/notifications", json={**body, "template_id": "nope"}, headers=SERVICE)
        missing = client.post("/api/v1/notifications", json={**body, "template_vars": {}}, headers=SERVICE)
    assert unknown.status_code == 422 and unknown.json()["error"]["message"] == (
        'template "nope" does not exist in any language'
    )
    assert missing.status_code == 422 and "is undefined" in missing.json()["error"]["message"]
    row = notification_row(db, created.json()["id"])
    assert row["title"] == "Ann hat Ihnen „Fix <b>“ zugewiesen" and row["held_until"] is None
    assert row["rendered"]["email"]["html"].startswith(
        "<p><strong>Ann</strong> hat Ihnen die Aufgabe <em>Fix &lt;b&gt;"
    )
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (1,)
    jobs = db.execute("SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE queue_name = 'render'").fetchone()
    assert jobs == (0,)


@pytest.fixture
def admin_api(own_server: Any) -> Iterator[httpx.Client]:
    """A real `notifyd serve` on the test's own database, and a client for it."""
    server: ServerProcess = own_server()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_admins_list_write_versions_and_preview(admin_api: httpx.Client) -> None:
    listed = admin_api.get(templates_api.PREFIX, headers=ORG_ADMIN)
    assert listed.status_code == 200
    assert {(t["name"], t["language"]) for t in listed.json()["templates"]} >= {("mention", "de"), ("mention", "en")}
    new = {"type": "user", "title_template": "{{ actor }} pinged you", "body_template": "{{ excerpt }}",
           "variables": {"actor": "who", "excerpt": "what"}}  # fmt: skip
    written = admin_api.put(f"{templates_api.PREFIX}/mention/en", json=new, headers=DBA)
    assert written.status_code == 201 and written.json()["version"] == 2
    sample = {"language": "en-GB", "variables": {"actor": "Ann", "excerpt": "x"}}
    preview = admin_api.post(f"{templates_api.PREFIX}/mention/preview", json=sample, headers=ORG_ADMIN)
    assert preview.status_code == 200 and preview.json()["title"] == "Ann pinged you" and preview.json()["version"] == 2
    versions = admin_api.get(f"{templates_api.PREFIX}/mention", headers=ORG_ADMIN).json()["templates"]
    assert [(v["language"], v["version"]) for v in versions] == [("de", 1), ("en", 2), ("en", 1)]


def test_admin_template_errors(admin_api: httpx.Client) -> None:
    new = {"type": "user", "title_template": "{{ actor }}", "body_template": "x", "variables": {"actor": "who"}}
    assert admin_api.put(f"{templates_api.PREFIX}/mention/en", json=new, headers=ORG_ADMIN).status_code == 403
    undeclared = admin_api.put(
        f"{templates_api.PREFIX}/mention/en", json={**new, "body_template": "{{ x }}"}, headers=DBA
    )
    assert undeclared.status_code == 422
    assert undeclared.json()["error"]["message"] == 'template "mention" (en) body_template uses undeclared variables: x'
    broken = admin_api.put(
        f"{templates_api.PREFIX}/mention/en", json={**new, "title_template": "{% if %}"}, headers=DBA
    )
    assert broken.status_code == 422 and "does not compile" in broken.json()["error"]["message"]
    missing = admin_api.post(f"{templates_api.PREFIX}/mention/preview", json={"variables": {"actor": "A"}}, headers=DBA)
    assert missing.status_code == 422 and "'where' is undefined" in missing.json()["error"]["message"]
    escape = admin_api.put(
        f"{templates_api.PREFIX}/mention/en", json={**new, "title_template": "{{ actor.__class__ }}"}, headers=DBA
    )
    assert escape.status_code == 201  # it compiles; rendering refuses it
    refused = admin_api.post(f"{templates_api.PREFIX}/mention/preview", json={"variables": {"actor": "A"}}, headers=DBA)
    assert refused.status_code == 422 and "refused by the sandbox" in refused.json()["error"]["message"]
    assert admin_api.get(f"{templates_api.PREFIX}/nope", headers=DBA).status_code == 404
    user = {"Authorization": f"Bearer {make_token(uuid.uuid4())}"}
    assert admin_api.get(templates_api.PREFIX, headers=user).status_code == 403
    versions = admin_api.get(f"{templates_api.PREFIX}/mention", headers=DBA).json()["templates"]
    assert [v["version"] for v in versions if v["language"] == "en"] == [2, 1]  # nothing half-written


# --- what rendering costs --------------------------------------------------------------------------------


async def test_rendering_latency_commit_to_websocket(
    db: psycopg.Connection[Any], own_server: Any, render_worker: None
) -> None:
    """Prints p50/p95 of commit → WebSocket for plain and SQL-created template notifications."""
    server: ServerProcess = own_server()
    user = recipient(db)
    conn = service_conn(db)
    rounds = 50
    figures: dict[str, list[float]] = {"plain": [], "template": []}
    async with ws_for(server, user) as ws:
        await settle(ws)
        for _ in range(rounds):
            for kind in figures:
                sql = (
                    "SELECT notify.send(%s, 'security', 'plain', priority => 'critical')"
                    if kind == "plain"
                    else "SELECT notify.send(%s, 'security', template => 'security_login', "
                    'template_vars => \'{"device": "a", "location": "b"}\', priority => \'critical\')'
                )
                committed = time.perf_counter()
                await asyncio.to_thread(conn.execute, sql, (user,))
                await recv_until(ws, "notification", timeout=10)
                figures[kind].append((time.perf_counter() - committed) * 1000)
                await recv_until(ws, "unread_count")
    conn.close()
    for kind, values in figures.items():
        cuts = statistics.quantiles(values, n=20)
        print(f"{kind}: p50 {statistics.median(values):.1f} ms, p95 {cuts[18]:.1f} ms ({rounds} sends)")
    assert statistics.median(figures["template"]) < 2000
