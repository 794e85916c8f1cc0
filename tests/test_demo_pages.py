"""The pages around the demo, over HTTP without a database: the icon, the dev e-mail and SMS sinks, the sender."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import html
import json
import re
import struct
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from notifyd import dev
from notifyd.db.localdb import STATE_DIR_ENV
from notifyd.domain import smtp
from notifyd.domain.deliveries import Sent
from notifyd.domain.email import RenderedEmail, send_params
from notifyd.domain.sms import SmsChannel
from tests.test_http_hygiene import offline_client
from tests.test_http_hygiene import settings as offline_settings

ICO_HEADER = struct.Struct("<HHH")  # reserved 0, type 1 (icon), image count
DEMO_PAGE = Path(dev.__file__).parent / "static" / "demo.html"
SETTINGS = offline_settings()


@pytest.mark.parametrize("dev_routes", [False, True], ids=["serve", "dev"])
async def test_the_favicon_is_a_small_icon_not_a_404(dev_routes: bool) -> None:
    async with offline_client(dev_routes=dev_routes) as client:
        icon = await client.get("/favicon.ico")
        again = await client.get("/favicon.ico", headers={"If-None-Match": icon.headers["etag"]})
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    reserved, kind, count = ICO_HEADER.unpack_from(icon.content)
    assert (reserved, kind) == (0, 1) and count >= 1
    assert len(icon.content) < 4096, "an icon, not a picture"
    assert again.status_code == 304


async def sink_page(client: httpx.AsyncClient) -> str:
    page = await client.get("/dev/outbox")
    assert page.status_code == 200
    return page.text


def first(pattern: str, page: str) -> str:
    found = re.search(pattern, page, re.S)
    assert found is not None, pattern
    return found[1].strip()


async def test_the_dev_sink_does_not_pass_for_the_demos_outbox_tab() -> None:
    demo = DEMO_PAGE.read_text(encoding="utf-8")
    demo_tab = demo[demo.index('id="outbox"') :]
    async with offline_client(dev_routes=True) as client:
        page = await sink_page(client)
    title, h1 = first(r"<title>(.*?)</title>", page), first(r"<h1>(.*?)</h1>", page)
    assert (title, h1) == ("Dev e-mail sink · notifyd dev", "Dev e-mail sink")
    assert title not in demo and h1 not in demo
    assert first(r"<h2>(.*?)</h2>", demo_tab) not in page, "the demo tab's heading is its own"
    # It says what it is: where e-mail lands without a provider, and how to send real e-mail.
    for words in ("not part of the Acme Tasks demo", "/dev/resend/emails", "RESEND_API_KEY", "/dev/outbox.json"):
        assert words in page
    assert "Nothing has arrived yet." in page


async def caught(subject: str, to: str) -> tuple[str, str]:
    """The sink's page after one e-mail arrived, and that e-mail's id."""
    async with offline_client(dev_routes=True) as client:
        sent = await client.post(
            "/dev/resend/emails",
            json={"to": [to], "subject": subject, "html": "<p>hi</p>"},
            headers={"Authorization": f"Bearer {dev.OUTBOX_API_KEY}"},
        )
        assert sent.status_code == 200
        return await sink_page(client), sent.json()["id"]


@settings(max_examples=25, deadline=None)
@given(subject=st.text(min_size=1, max_size=40), to=st.emails())
def test_the_dev_sink_lists_what_arrived_escaped(subject: str, to: str) -> None:
    page, email_id = asyncio.run(caught(subject, to))
    assert f'<a href="/dev/outbox/{email_id}">{html.escape(subject)}</a>' in page
    assert f"<td>{html.escape(to)}</td>" in page
    assert "1 e-mail(s) caught" in page and "Nothing has arrived yet." not in page


@pytest.mark.parametrize(
    ("configured", "expected"),
    [({}, (dev.DEMO_PRODUCT, "http://127.0.0.1:8000/#inbox")),
     ({"RESEND_FROM_NAME": "Initech", "NOTIFICATION_CENTER_URL": "https://initech.example/inbox"},
      ("Initech", "https://initech.example/inbox"))],
)  # fmt: skip
def test_dev_e_mails_name_the_demo_and_link_its_inbox_unless_configured(
    configured: dict[str, str], expected: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    for name in ("JWT_SECRET", "RESEND_API_KEY", "RESEND_FROM_NAME", "NOTIFICATION_CENTER_URL", "PUBLIC_BASE_URL",
                 "NOTIFYD_HOST", "NOTIFYD_PORT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in configured.items():
        monkeypatch.setenv(name, value)
    made = dev.dev_settings("postgresql://notifyd_dev@127.0.0.1/notifyd")
    assert (made.resend_from_name, made.notification_center_url) == expected


async def test_the_dev_sms_sink_takes_what_twilio_takes_and_lists_it() -> None:
    path = f"/dev/twilio/2010-04-01/Accounts/{dev.SMS_SINK_SID}/Messages.json"
    form = {"To": dev.DEMO_PHONES["alice"], "From": dev.SMS_SINK_FROM, "Body": "Review PR #123 https://x.example/1"}
    async with offline_client(dev_routes=True) as client:
        refused = await client.post(path, data=form, auth=(dev.SMS_SINK_SID, "not-the-token"))
        taken = await client.post(path, data=form, auth=(dev.SMS_SINK_SID, dev.SMS_SINK_TOKEN))
        listed = (await client.get("/dev/sms.json")).json()
    assert refused.status_code == 401 and taken.status_code == 201 and taken.json()["sid"].startswith("SM")
    assert [(m["to"], m["body"]) for m in listed] == [(form["To"], form["Body"])]


def test_dev_sends_sms_to_its_sink_unless_twilio_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    for name in ("JWT_SECRET", "TWILIO_ACCOUNT_SID", "NOTIFYD_HOST", "NOTIFYD_PORT"):
        monkeypatch.delenv(name, raising=False)
    made = dev.dev_settings("postgresql://notifyd_dev@127.0.0.1/notifyd")
    assert made.twilio_api_url == "http://127.0.0.1:8000/dev/twilio"
    assert SmsChannel(made).not_configured() is None
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    assert dev.dev_settings("postgresql://notifyd_dev@127.0.0.1/notifyd").twilio_api_url is None


async def test_the_dev_hook_sink_answers_as_each_platform_and_lists_what_arrived() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = json.dumps({"data": {"title": "Hi"}}).encode()
    signed = {"webhook-id": "d2", "webhook-timestamp": str(int(time.time())), "content-type": "application/json"}
    signed["webhook-signature"] = Webhook(secret).sign("d2", datetime.now(UTC), body)
    async with offline_client(dev_routes=True) as client:
        slack = await client.post("/dev/hooks/slack", json={"text": "Build finished", "blocks": []})
        teams = await client.post("/dev/hooks/teams", json={"type": "message", "attachments": []})
        headers = {"webhook-id": "d1", "webhook-signature": "v1,x", "cookie": "a=b"}
        forged = await client.post("/dev/hooks/webhook", json={"data": {"title": "Hi"}}, headers=headers)
        not_secrets: list[object] = [{"secret": "nope"}, {"secret": 7}, {"secret": "whsec_"}, []]
        bad_secrets = [await client.post("/dev/hooks/webhook/secrets", json=value) for value in not_secrets]
        trusted = await client.post("/dev/hooks/webhook/secrets", json={"secret": secret})
        hook = await client.post("/dev/hooks/webhook", content=body, headers=signed)
        unknown = await client.post("/dev/hooks/pager", json={})
        not_json = await client.post("/dev/hooks/discord", content=b"{", headers={"content-type": "application/json"})
        arrived = (await client.get("/dev/hooks.json")).json()
        tokens = (await client.get("/dev/tokens")).json()
    assert (slack.status_code, slack.text, teams.status_code) == (200, "ok", 202)
    assert (forged.status_code, trusted.status_code, hook.status_code) == (401, 200, 204)
    assert [r.status_code for r in bad_secrets] == [400] * 4
    assert (unknown.status_code, not_json.status_code) == (404, 400)
    assert [a["kind"] for a in arrived] == ["webhook", "webhook", "teams", "slack"], "newest first"
    assert [a["verified"] for a in arrived] == [True, False, None, None], "the receiver checks signatures"
    assert arrived[1]["headers"] == {"webhook-id": "d1", "webhook-signature": "v1,x"}, "only the webhook headers"
    assert tokens["hooks_url"].startswith("http://127.0.0.1:") and tokens["hooks_url"].endswith("/dev/hooks")
    assert tokens["phones"] == dev.DEMO_PHONES


async def test_the_dev_resend_can_be_set_to_fail_as_resend_does_when_down() -> None:
    auth = {"Authorization": f"Bearer {dev.OUTBOX_API_KEY}"}
    email = {"to": ["a@example.com"], "subject": "Hi", "html": "<p>hi</p>"}
    async with offline_client(dev_routes=True) as client:
        down = await client.put("/dev/resend/failing", json={"failing": True})
        refused = await client.post("/dev/resend/emails", json=email, headers=auth)
        listed_down = (await client.get("/dev/outbox.json")).json()
        not_switches: list[object] = [{"failing": "yes"}, {}, []]
        bad = [await client.put("/dev/resend/failing", json=value) for value in not_switches]
        up = await client.put("/dev/resend/failing", json={"failing": False})
        taken = await client.post("/dev/resend/emails", json=email, headers=auth)
        listed_up = (await client.get("/dev/outbox.json")).json()
    assert (down.json(), refused.status_code, refused.json()["name"]) == ({"failing": True}, 500, "application_error")
    assert listed_down == {"resend_failing": True, "emails": []}
    assert [r.status_code for r in bad] == [400] * 3
    assert (up.json(), taken.status_code) == ({"failing": False}, 200)
    [caught] = listed_up["emails"]
    assert (caught["via"], caught["to"], caught["subject"]) == ("resend", "a@example.com", "Hi")


async def test_the_dev_smtp_sink_takes_what_the_smtp_provider_sends_into_the_outbox() -> None:
    sinks = dev.Sinks()
    server = await sinks.smtp.start()
    assert server is not None, "aiosmtpd is installed with the test extra"
    try:
        port = server.sockets[0].getsockname()[1]
        made = dev.with_smtp_sink(dataclasses.replace(SETTINGS, resend_from_email="notifyd@localhost"), port)
        rendered = RenderedEmail(
            "Over SMTP", "<p>Hi <b>alice</b></p>", "Hi", {"List-Unsubscribe": "<https://x.example/u>"}
        )
        params = send_params(made, "alice@example.com", rendered)
        delivery_id = uuid.uuid4()
        outcome = await smtp.send(made, smtp.message(params, delivery_id), 5.0)
    finally:
        server.close()
    assert isinstance(outcome, Sent) and outcome.provider == "smtp"
    [caught] = sinks.outbox.emails
    assert (caught["via"], caught["to"], caught["subject"]) == ("smtp", "alice@example.com", "Over SMTP")
    assert str(caught["html"]).strip() == "<p>Hi <b>alice</b></p>" and str(caught["message_id"]).startswith(
        f"<{delivery_id}@"
    )
    # A configured SMTP server wins over the sink.
    own = dataclasses.replace(SETTINGS, smtp_host="smtp.example.com", smtp_port=465, smtp_tls="tls")
    assert dev.with_smtp_sink(own, port) is own
