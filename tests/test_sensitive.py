"""Sensitive fields: masked in every channel, stored only encrypted, revealed to the recipient alone.

A template marks top-level keys of `data` and `template_vars` sensitive; the tests send such a
notification through REST and through SQL to a real notifyd, the real worker, the push stand-in (which
decrypts what arrives) and the Resend stand-in, and look for the real value everywhere it must not be.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from notifyd.core.crypto import SecretBox, SecretsError
from notifyd.domain import sensitive
from tests.conftest import service_conn
from tests.server import make_token, wait_for
from tests.standins.push_service import PushService
from tests.standins.resend import ResendService
from tests.test_email import mail_env
from tests.test_webpush import API, SERVICE, Stack, start_stack, user_headers

CODE = "493817"
ACCOUNT = "DE44500105175407324931"


# --- masking and sealing ----------------------------------------------------------------------------------


def test_masking_takes_the_marked_fields_out_of_both_objects() -> None:
    fields = sensitive.marked([{"sensitive_fields": ["code"]}, {"sensitive_fields": ["iban"]}, {}])
    assert fields == {"code", "iban"}  # any language's marking counts
    masked = sensitive.mask(fields, {"iban": ACCOUNT, "url": "/x"}, {"code": CODE, "who": "Ann"})
    assert masked.data == {"iban": sensitive.MASK, "url": "/x"}
    assert masked.template_vars == {"code": sensitive.MASK, "who": "Ann"}
    assert masked.real == {"data": {"iban": ACCOUNT}, "template_vars": {"code": CODE}}
    assert sensitive.mask(fields, {"url": "/x"}, {}).real is None  # nothing to seal


def test_sealed_values_open_only_with_the_key() -> None:
    box = SecretBox(b"k" * 32)
    real = {"data": {"iban": ACCOUNT}, "template_vars": {}}
    sealed = sensitive.seal(box, real)
    assert ACCOUNT not in sealed and sealed.startswith("enc1.")
    assert sensitive.reveal(box, sealed) == real
    with pytest.raises(SecretsError, match="^sensitive fields need NOTIFICATION_ENCRYPTION_KEY, which is not set$"):
        sensitive.seal(None, real)
    with pytest.raises(SecretsError, match="neither the current nor an old key"):
        sensitive.reveal(SecretBox(b"o" * 32), sealed)


# --- end to end -------------------------------------------------------------------------------------------


def add_template(db: psycopg.Connection[Any]) -> None:
    """A sign-in code template: the code is sensitive in template_vars, the account in data."""
    db.execute(
        "INSERT INTO notify.notification_templates (name, type, language, title_template, body_template, "
        "push_body_template, email_text_template, variables, sensitive_fields) VALUES "
        "('sign_in_code', 'security', 'en', 'Your sign-in code', 'Use {{ code }} to sign in, {{ who }}.', "
        "'Code {{ code }}', 'Your code: {{ code }}', %s, '{code,iban}')",
        (Jsonb({"code": "the one-time code", "who": "the user's name"}),),
    )


@pytest.fixture
def sensitive_stack(
    db: psycopg.Connection[Any],
    own_server: Any,
    own_worker: Any,
    push_service: PushService,
    resend_service: ResendService,
) -> Iterator[Stack]:
    add_template(db)
    started = start_stack(db, own_server, own_worker, push_service, **mail_env(resend_service))
    yield started
    started.client.close()


def recipient(stack: Stack) -> uuid.UUID:
    user = uuid.uuid4()
    stack.db.execute("INSERT INTO notify.recipients (user_id, email) VALUES (%s, 'ann@example.com')", (user,))
    stack.subscribe(user)
    return user


BODY = {
    "type": "security", "priority": "critical", "channels": ["in_app", "push", "email"],
    "template_id": "sign_in_code", "template_vars": {"code": CODE, "who": "Ann"},
    "data": {"iban": ACCOUNT, "url": "/security"},
}  # fmt: skip


def stored(db: psycopg.Connection[Any], notification_id: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT to_jsonb(n) - 'sealed' AS visible, sealed FROM notify.notifications AS n WHERE id = %s",
        (notification_id,),
    ).fetchone()
    assert row is not None
    return {"visible": row[0], "sealed": row[1]}


def assert_masked_everywhere(stack: Stack, resend: ResendService, user: uuid.UUID, notification_id: str) -> None:
    row = stored(stack.db, notification_id)
    assert CODE not in str(row["visible"]) and ACCOUNT not in str(row["visible"]), row["visible"]
    assert row["visible"]["template_vars"] == {"code": sensitive.MASK, "who": "Ann"}
    assert row["visible"]["data"] == {"iban": sensitive.MASK, "url": "/security"}
    assert row["visible"]["body"] == f"Use {sensitive.MASK} to sign in, Ann."
    assert row["sealed"].startswith("enc1.") and CODE not in row["sealed"]

    push = stack.message(notification_id).json  # decrypted by the stand-in
    assert push is not None and push["body"] == f"Code {sensitive.MASK}"
    assert push["data"]["iban"] == sensitive.MASK and CODE not in str(push) and ACCOUNT not in str(push)
    [email] = wait_for(lambda: resend.emails, 15, what="the e-mail") or [None]
    assert f"Your code: {sensitive.MASK}" in email.text
    assert CODE not in email.text + email.html + email.subject

    listed = stack.client.get(API, headers=user_headers(user)).json()["items"]
    assert [item["body"] for item in listed] == [f"Use {sensitive.MASK} to sign in, Ann."]
    revealed = stack.client.get(f"{API}/{notification_id}/sensitive", headers=user_headers(user))
    assert revealed.status_code == 200, revealed.text
    assert revealed.json() == {"id": notification_id, "data": {"iban": ACCOUNT}, "template_vars": {"code": CODE}}


def test_a_rest_send_is_masked_in_every_channel_and_sealed_before_the_insert(
    sensitive_stack: Stack, resend_service: ResendService
) -> None:
    user = recipient(sensitive_stack)
    created = sensitive_stack.client.post(API, json={**BODY, "user_id": str(user)}, headers=SERVICE)
    assert created.status_code == 202, created.text
    assert_masked_everywhere(sensitive_stack, resend_service, user, created.json()["id"])


def test_a_sql_send_is_masked_and_sealed_when_the_worker_renders_it(
    sensitive_stack: Stack, resend_service: ResendService
) -> None:
    user = recipient(sensitive_stack)
    conn = service_conn(sensitive_stack.db)
    try:
        row = conn.execute(
            "SELECT notify.send(%s, 'security', priority => 'critical', channels => ARRAY['in_app','push','email'], "
            "template => 'sign_in_code', template_vars => %s, data => %s)",
            (user, Jsonb(BODY["template_vars"]), Jsonb(BODY["data"])),
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    notification_id = str(row[0])
    wait_for(lambda: stored(sensitive_stack.db, notification_id)["sealed"], 15, what="the rendering")
    assert_masked_everywhere(sensitive_stack, resend_service, user, notification_id)


def test_only_the_recipient_reveals_and_a_plain_notification_has_nothing_to_reveal(
    sensitive_stack: Stack,
) -> None:
    user = recipient(sensitive_stack)
    client = sensitive_stack.client
    secret = client.post(API, json={**BODY, "user_id": str(user), "channels": ["in_app"]}, headers=SERVICE).json()["id"]
    plain = client.post(API, json={"user_id": str(user), "type": "task", "title": "Hi"}, headers=SERVICE).json()["id"]

    other = client.get(f"{API}/{secret}/sensitive", headers=user_headers(uuid.uuid4()))
    assert (other.status_code, other.json()["error"]["message"]) == (404, "notification not found")
    nothing = client.get(f"{API}/{plain}/sensitive", headers=user_headers(user))
    assert nothing.status_code == 404
    assert nothing.json()["error"]["message"] == "this notification has no sensitive fields"
    as_service = client.get(f"{API}/{secret}/sensitive", headers=SERVICE)
    assert as_service.status_code == 403
    anonymous = client.get(f"{API}/{secret}/sensitive")
    assert anonymous.status_code == 401


def test_without_a_key_rest_refuses_and_nothing_is_written(db: psycopg.Connection[Any], own_server: Any) -> None:
    add_template(db)
    server = own_server(NOTIFICATION_ENCRYPTION_KEY="")
    user = uuid.uuid4()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        refused = client.post(API, json={**BODY, "user_id": str(user), "channels": ["in_app"]}, headers=SERVICE)
    assert refused.status_code == 503
    assert refused.json()["error"]["message"] == "sensitive fields need NOTIFICATION_ENCRYPTION_KEY, which is not set"
    assert db.execute("SELECT count(*) FROM notify.notifications").fetchone() == (0,)


def test_admins_mark_fields_sensitive_over_rest(db: psycopg.Connection[Any], own_server: Any) -> None:
    server = own_server()
    admin = {"Authorization": f"Bearer {make_token('dba', role='admin')}"}
    template = {"type": "security", "title_template": "Code", "body_template": "{{ code }}",
                "variables": {"code": "the code"}}  # fmt: skip
    otp = "/api/v1/admin/templates/otp/en"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        written = client.put(otp, json={**template, "sensitive_fields": ["code"]}, headers=admin)
        too_many = client.put(otp, json={**template, "sensitive_fields": [f"f{i}" for i in range(51)]}, headers=admin)
        empty_name = client.put(otp, json={**template, "sensitive_fields": [""]}, headers=admin)
    assert written.status_code == 201, written.text
    assert written.json()["sensitive_fields"] == ["code"]
    assert (too_many.status_code, empty_name.status_code) == (422, 422)
    row = db.execute("SELECT sensitive_fields FROM notify.notification_templates WHERE name = 'otp'").fetchall()
    assert row == [(["code"],)]


def test_without_a_key_the_worker_shows_masks_and_keeps_nothing_in_clear(
    db: psycopg.Connection[Any], own_worker: Any
) -> None:
    add_template(db)
    worker = own_worker(NOTIFICATION_ENCRYPTION_KEY="", WORKER_POLL_INTERVAL="0.5")
    conn = service_conn(db)
    try:
        row = conn.execute(
            "SELECT notify.send(%s, 'security', channels => ARRAY['in_app'], template => 'sign_in_code', "
            "template_vars => %s, data => %s)",
            (uuid.uuid4(), Jsonb(BODY["template_vars"]), Jsonb(BODY["data"])),
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    notification_id = str(row[0])
    wait_for(lambda: stored(db, notification_id)["visible"]["rendered"] is not None, 15, what="the rendering")
    kept = stored(db, notification_id)
    assert kept["sealed"] is None and CODE not in str(kept["visible"]) and ACCOUNT not in str(kept["visible"])
    assert f"notification {notification_id}: sensitive fields need NOTIFICATION_ENCRYPTION_KEY" in worker.log()


def test_a_template_that_cannot_render_keeps_nothing_in_clear_either(
    db: psycopg.Connection[Any], own_worker: Any
) -> None:
    add_template(db)
    own_worker(WORKER_POLL_INTERVAL="0.5")
    conn = service_conn(db)
    try:
        row = conn.execute(
            "SELECT notify.send(%s, 'security', channels => ARRAY['in_app'], template => 'sign_in_code', "
            "template_vars => %s)",
            (uuid.uuid4(), Jsonb({"code": CODE})),  # no "who": the body cannot render
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    notification_id = str(row[0])
    wait_for(lambda: stored(db, notification_id)["visible"]["render_error"], 15, what="the render error")
    kept = stored(db, notification_id)
    assert "'who' is undefined" in kept["visible"]["render_error"]
    assert kept["visible"]["template_vars"] == {"code": sensitive.MASK}
    assert kept["sealed"].startswith("enc1.") and CODE not in str(kept["visible"])
