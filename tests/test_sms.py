"""SMS through Twilio: a real worker and server, the Twilio stand-in, real PostgreSQL.

What arrives at the stand-in is asserted (auth, form fields, the text and its link); STOP and START come
as signed inbound webhooks; phone numbers are checked as a class (hypothesis) in Python and in the database.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import phonenumbers
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifyd.domain.sms import ELLIPSIS, e164, request_signature, sms_text
from tests.conftest import returned_id, user_conn
from tests.decisions import channel_decision, channel_settled
from tests.server import QUICK_WORKER_ENV, ServerProcess, WorkerProcess, make_token
from tests.standins.http import Response
from tests.standins.twilio import TwilioService, inbound_form, sign, twilio_error

FROM_NUMBER = "+15005550006"
PUBLIC_BASE_URL = "https://notify.example.com"
INBOUND = "/api/v1/webhooks/twilio"
LINK = "https://app.example.com/tasks/123"
SERVICE_TOKEN = make_token("billing", role="service")


def twilio_env(twilio: TwilioService) -> dict[str, str]:
    """The SMS channel's settings for the stand-in, and nothing else (a caller keeps its own timings)."""
    return {
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_URL": twilio.url,
    }


def sms_env(twilio: TwilioService, **overrides: str) -> dict[str, str]:
    return {**twilio_env(twilio), **QUICK_WORKER_ENV, "PUBLIC_BASE_URL": PUBLIC_BASE_URL, **overrides}


@pytest.fixture
def worker(quick_retries: None, own_worker: Any, twilio_service: TwilioService) -> WorkerProcess:
    proc: WorkerProcess = own_worker(**sms_env(twilio_service))
    return proc


def recipient(service: psycopg.Connection[Any], phone: str | None) -> uuid.UUID:
    user = uuid.uuid4()
    service.execute("SELECT notify.upsert_recipient_v2(%s, phone => %s)", (user, phone))
    return user


def send(service: psycopg.Connection[Any], user: uuid.UUID, *, title: str = "Review PR #123",
         body: str = "Alice asked you to review it.", priority: str = "high", data: dict[str, Any] | None = None,
         channels: tuple[str, ...] = ("in_app", "sms"), notification_type: str = "task") -> uuid.UUID:  # fmt: skip
    return returned_id(
        service,
        "SELECT notify.send(user_id => %s, type => %s, title => %s, body => %s, priority => %s, "
        "data => %s::jsonb, channels => %s)",
        (user, notification_type, title, body, priority, json.dumps(data or {}), list(channels)),
    )


def sms_decision(db: psycopg.Connection[Any], notification_id: uuid.UUID) -> dict[str, Any]:
    return channel_decision(db, notification_id, "sms")


def settled(db: psycopg.Connection[Any], notification_id: uuid.UUID, status: str) -> dict[str, Any]:
    return channel_settled(db, notification_id, "sms", status)


def reply(server: ServerProcess, twilio: TwilioService, phone: str, text: str, *,
          token: str | None = None) -> httpx.Response:  # fmt: skip
    """The number `phone` replies `text`: Twilio's signed inbound webhook, to notifyd's public URL."""
    form = inbound_form(twilio.account_sid, phone, FROM_NUMBER, text)
    signature = sign(token or twilio.auth_token, f"{PUBLIC_BASE_URL}{INBOUND}", form)
    return httpx.post(f"{server.url}{INBOUND}", data=form, headers={"X-Twilio-Signature": signature})


def opted_out(db: psycopg.Connection[Any], user: uuid.UUID) -> bool:
    row = db.execute(
        "SELECT sms_opted_out_at IS NOT NULL FROM notify.recipients WHERE user_id = %s", (user,)
    ).fetchone()
    assert row is not None
    return bool(row[0])


# --- end to end ------------------------------------------------------------------------------------


def test_an_sms_goes_through_twilio_with_auth_form_fields_and_its_link(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess,
    twilio_service: TwilioService,
) -> None:  # fmt: skip
    user = recipient(service, "+14155550123")
    sent = send(service, user, data={"url": LINK})
    decision = settled(db, sent, "sent")
    [message] = twilio_service.messages
    # The stand-in accepted it, so basic auth, the account's path and the form's shape were Twilio's.
    assert message.to == "+14155550123" and message.from_ == FROM_NUMBER and message.messaging_service_sid is None
    assert message.body == f"Review PR #123 Alice asked you to review it. {LINK}"
    assert set(message.form) == {"To", "From", "Body"}
    assert decision["provider"] == "twilio" and decision["provider_message_id"] == message.sid
    assert decision["attempts"] == 1 and decision["repeats"] == 0
    explained = db.execute("SELECT notify.explain(%s)", (sent,)).fetchone()
    assert explained is not None
    [sms] = [d for d in explained[0]["decisions"] if d["channel"] == "sms"]
    assert sms["status"] == "sent" and sms["provider"] == "twilio"


def test_a_long_text_is_cut_and_its_link_kept_whole(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess,
    twilio_service: TwilioService,
) -> None:  # fmt: skip
    user = recipient(service, "+447700900123")
    sent = send(service, user, title="Quarterly report", body="word " * 400, data={"action_url": LINK})
    settled(db, sent, "sent")
    [message] = twilio_service.messages
    assert len(message.body) <= 320 and message.body.endswith(f"{ELLIPSIS} {LINK}")
    assert message.body.startswith("Quarterly report word word")


def test_twilio_refusals_are_final_and_its_trouble_is_retried(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess,
    twilio_service: TwilioService,
) -> None:  # fmt: skip
    refused, flaky = recipient(service, "+14155550124"), recipient(service, "+14155550125")
    twilio_service.script(twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"), to="+14155550124")
    too_many = Response(429, headers={"Retry-After": "0"}, body={"code": 20429, "message": "Too Many Requests"})
    twilio_service.script(twilio_error(503, 20500, "Service unavailable"), too_many, to="+14155550125")
    first, second = send(service, refused), send(service, flaky)
    failed = settled(db, first, "failed")
    assert failed["attempts"] == 1 and "21610" in failed["error_message"] and failed["provider"] is None
    retried = settled(db, second, "sent")
    assert retried["attempts"] == 3
    assert [m.to for m in twilio_service.messages] == ["+14155550125"]

    # The refused one is a dead letter; analytics count one SMS sent and one failed.
    dead = db.execute("SELECT notification_id, channel FROM notify.dead_letters").fetchall()
    assert dead == [(first, "sms")]
    events = db.execute("SELECT event FROM notify.delivery_events WHERE channel = 'sms' ORDER BY event").fetchall()
    assert events == [("failed",), ("sent",)]
    # GDPR erasure takes the number (the recipient row) and the provider's error that quoted it.
    counts = db.execute("SELECT notify.erase_user(%s)", (refused,)).fetchone()
    assert counts is not None and counts[0]["recipients"] == 1
    assert db.execute("SELECT count(*) FROM notify.recipients WHERE phone = '+14155550124'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM notify.dead_letters").fetchone() == (0,)


def test_no_number_or_no_configuration_is_a_clear_skip(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_worker: Any, twilio_service: TwilioService,
) -> None:  # fmt: skip
    no_phone = send(service, recipient(service, None))
    decision = sms_decision(db, no_phone)
    assert (decision["status"], decision["reason"]) == ("skipped", "no phone number")
    own_worker(**sms_env(twilio_service, TWILIO_FROM_NUMBER=""))
    unconfigured = send(service, recipient(service, "+14155550126"))
    skipped = settled(db, unconfigured, "skipped")
    assert skipped["reason"] == ("SMS is not configured: set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
    assert twilio_service.messages == []


def test_a_messaging_service_picks_the_sender(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_worker: Any, twilio_service: TwilioService,
) -> None:  # fmt: skip
    own_worker(**sms_env(twilio_service, TWILIO_MESSAGING_SERVICE_SID="MG" + "0" * 32))
    settled(db, send(service, recipient(service, "+14155550127")), "sent")
    [message] = twilio_service.messages
    assert message.messaging_service_sid == "MG" + "0" * 32 and message.from_ is None


# --- STOP and START ---------------------------------------------------------------------------------


def test_stop_opts_the_number_out_and_start_back_in(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess, own_server: Any,
    twilio_service: TwilioService,
) -> None:  # fmt: skip
    server: ServerProcess = own_server(**sms_env(twilio_service))
    user, neighbour = recipient(service, "+14155550128"), recipient(service, "+14155550129")
    answer = reply(server, twilio_service, "+14155550128", " stop ")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
    assert "<Response/>" in answer.text
    assert opted_out(db, user) and not opted_out(db, neighbour)

    # The planner honours it, critical included; explain says why. The neighbour still gets theirs.
    for priority in ("high", "critical"):
        held_back = send(service, user, priority=priority)
        decision = sms_decision(db, held_back)
        assert decision["status"] == "skipped" and decision["reason"].startswith("the number replied STOP on ")
    settled(db, send(service, neighbour), "sent")

    # Something else than a keyword changes nothing; START opts back in.
    assert reply(server, twilio_service, "+14155550128", "thanks!").status_code == 200
    assert opted_out(db, user)
    assert reply(server, twilio_service, "+14155550128", "START").status_code == 200
    assert not opted_out(db, user)
    settled(db, send(service, user), "sent")
    assert [m.to for m in twilio_service.messages] == ["+14155550129", "+14155550128"]


def test_a_pending_sms_is_not_sent_after_stop(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_server: Any, twilio_service: TwilioService,
    own_worker: Any,
) -> None:  # fmt: skip
    server: ServerProcess = own_server(**sms_env(twilio_service))
    user = recipient(service, "+14155550130")
    waiting = send(service, user)  # no worker yet: it waits in the ledger
    assert reply(server, twilio_service, "+14155550130", "STOP").status_code == 200
    own_worker(**sms_env(twilio_service))
    assert settled(db, waiting, "skipped")["reason"] == "the number replied STOP"
    assert twilio_service.messages == []


def test_a_new_number_has_not_opted_out(db: psycopg.Connection[Any], service: psycopg.Connection[Any]) -> None:
    user = recipient(service, "+14155550131")
    db.execute("SELECT notify_private.record_sms_reply('+14155550131', 'STOP')")
    assert opted_out(db, user)
    service.execute("SELECT notify.upsert_recipient_v2(%s, email => 'x@example.com')", (user,))
    assert opted_out(db, user), "the same number keeps its STOP"
    service.execute("SELECT notify.upsert_recipient_v2(%s, phone => '+14155550132')", (user,))
    assert not opted_out(db, user)


def test_a_forged_or_unsigned_inbound_webhook_changes_nothing(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], own_server: Any, twilio_service: TwilioService,
) -> None:  # fmt: skip
    server: ServerProcess = own_server(**sms_env(twilio_service))
    user = recipient(service, "+14155550133")
    assert reply(server, twilio_service, "+14155550133", "STOP", token="not-the-auth-token").status_code == 401
    unsigned = httpx.post(f"{server.url}{INBOUND}", data=inbound_form(twilio_service.account_sid, "+14155550133",
                                                                       FROM_NUMBER, "STOP"))  # fmt: skip
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "UNAUTHORIZED"
    # Signed for another URL (a replay to another endpoint) or with a field changed after signing.
    form = inbound_form(twilio_service.account_sid, "+14155550133", FROM_NUMBER, "START")
    other_url = sign(twilio_service.auth_token, f"{PUBLIC_BASE_URL}/elsewhere", form)
    assert httpx.post(f"{server.url}{INBOUND}", data=form, headers={"X-Twilio-Signature": other_url}).status_code == 401
    signature = sign(twilio_service.auth_token, f"{PUBLIC_BASE_URL}{INBOUND}", form)
    changed = {**form, "Body": "STOP"}
    assert (
        httpx.post(f"{server.url}{INBOUND}", data=changed, headers={"X-Twilio-Signature": signature}).status_code == 401
    )
    assert not opted_out(db, user)
    unconfigured: ServerProcess = own_server()
    answer = reply(unconfigured, twilio_service, "+14155550133", "STOP")
    assert answer.status_code == 503 and "TWILIO_AUTH_TOKEN" in answer.json()["error"]["message"]
    assert not opted_out(db, user)


def test_the_signature_matches_twilios_published_examples() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"),
              ("From", "+14158675309"), ("To", "+18005551212")]  # fmt: skip
    assert request_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert request_signature("12345", url, list(reversed(params))) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
    assert request_signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


# --- preferences, limits, the REST edge -----------------------------------------------------------


def test_the_users_sms_switch_and_the_daily_limit(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    user = recipient(service, "+14155550134")
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, sms_enabled) "
        "VALUES (%s, 'task', false)",
        (user,),
    )
    off = sms_decision(db, send(service, user))
    assert (off["status"], off["reason"]) == ("skipped", "SMS is turned off for task notifications")
    # Critical overrides the user's own switch, as for push and e-mail.
    assert sms_decision(db, send(service, user, priority="critical"))["status"] == "pending"

    other = recipient(service, "+14155550135")
    db.execute("UPDATE notify.settings SET value = '2' WHERE key = 'rate_limit.sms_per_day'")
    decisions = [sms_decision(db, send(service, other)) for _ in range(3)]
    assert [d["status"] for d in decisions] == ["pending"] * 3
    assert decisions[0]["reason"] is None and decisions[1]["reason"] is None
    assert decisions[2]["reason"] == "SMS rate limit (2 per day): waits for a token"


def test_a_user_turns_sms_off_through_the_preference_functions(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any]
) -> None:
    user = recipient(service, "+14155550138")
    with user_conn(db, str(user)) as me:
        item = me.execute("SELECT notify.set_preference('task', '{\"sms_enabled\": false}')").fetchone()
        assert item is not None and item[0]["sms_enabled"] is False
        glob = me.execute("SELECT notify.set_global_preferences('{\"all_sms_enabled\": false}')").fetchone()
        assert glob is not None and glob[0]["all_sms_enabled"] is False
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="sms_enabled must be true or false"):
            me.execute("SELECT notify.set_preference('task', '{\"sms_enabled\": \"no\"}')")
    assert sms_decision(db, send(service, user))["reason"] == "SMS is turned off for task notifications"
    other = sms_decision(db, send(service, user, title="Billing", notification_type="billing"))
    assert other["reason"] == "SMS is turned off for billing notifications", "the global switch holds for every type"


def test_sms_waits_for_quiet_hours(db: psycopg.Connection[Any], service: psycopg.Connection[Any]) -> None:
    user = recipient(service, "+14155550136")
    db.execute(
        "INSERT INTO notify.notification_preferences (user_id, notification_type, quiet_hours_start, quiet_hours_end,"
        " quiet_hours_days) VALUES (%s, NULL, '00:00', '23:59:59', '[1,2,3,4,5,6,7]')",
        (user,),
    )
    decision = sms_decision(db, send(service, user))
    assert decision["status"] == "pending" and decision["reason"].startswith("held for quiet hours until ")


def test_a_sender_sets_a_phone_number_over_rest_normalised_to_e164(
    db: psycopg.Connection[Any], own_server: Any
) -> None:
    server: ServerProcess = own_server()
    user = uuid.uuid4()
    headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    answer = httpx.put(f"{server.url}/api/v1/recipients/{user}", json={"phone": "+44 20 7946 0958"}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"user_id": str(user)} == {
        "user_id": str(user), "email": None, "locale": "en", "timezone": "UTC", "org_id": None,
        "phone": "+442079460958", "sms_opted_out": False,
    }  # fmt: skip
    bad = httpx.put(f"{server.url}/api/v1/recipients/{user}", json={"phone": "12345"}, headers=headers)
    assert bad.status_code == 422 and "phone must be a phone number in international form" in bad.text
    row = db.execute("SELECT phone FROM notify.recipients WHERE user_id = %s", (user,)).fetchone()
    assert row == ("+442079460958",)
    user_token = make_token(user)
    denied = httpx.put(f"{server.url}/api/v1/recipients/{user}", json={"phone": "+14155550137"},
                       headers={"Authorization": f"Bearer {user_token}"})  # fmt: skip
    assert denied.status_code == 403


# --- phone numbers as a class --------------------------------------------------------------------------

REGIONS = sorted(r for r in phonenumbers.SUPPORTED_REGIONS if phonenumbers.example_number(r) is not None)


@settings(max_examples=150, deadline=None)
@given(region=st.sampled_from(REGIONS))
def test_every_valid_number_normalises_to_one_e164_form(region: str) -> None:
    number = phonenumbers.example_number(region)
    assert number is not None
    canonical = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    assert e164(written) == canonical == e164(canonical)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    assert e164(national, region) == canonical
    assert len(canonical) <= 16 and canonical.startswith("+") and canonical[1:].isdigit()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_anything_else_is_refused_with_a_clear_message(value: str) -> None:
    try:
        normalised = e164(value)
    except ValueError as error:
        assert repr(value) in str(error) and "phone" in str(error)
    else:
        assert normalised.startswith("+") and phonenumbers.is_valid_number(phonenumbers.parse(normalised))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(max_size=20), st.from_regex(r"^\+?[0-9]{1,18}$", fullmatch=True)))
def test_the_database_takes_only_e164(db: psycopg.Connection[Any], value: str) -> None:
    shaped = value.startswith("+") and value[1:].isdigit() and value[1:2] != "0" and 7 <= len(value) - 1 <= 15
    user = uuid.uuid4()
    if "\x00" in value:
        return  # PostgreSQL text cannot hold NUL at all: not a question of this check
    try:
        db.execute("INSERT INTO notify.recipients (user_id, phone) VALUES (%s, %s)", (user, value))
    except psycopg.errors.CheckViolation as error:
        assert not shaped and "phone must be an E.164 number such as +14155550100" in str(error)
    else:
        assert shaped
    assert db.execute("SELECT count(*) FROM notify.recipients WHERE user_id = %s", (user,)).fetchone() == (
        1 if shaped else 0,
    )


@settings(max_examples=200, deadline=None)
@given(title=st.text(max_size=300), body=st.text(max_size=600), link=st.booleans(), limit=st.integers(60, 400))
def test_the_text_fits_and_keeps_its_link(title: str, body: str, link: bool, limit: int) -> None:
    text = sms_text({"title": title, "body": body, "data": {"url": LINK} if link else {}}, limit)
    assert len(text) <= limit
    if link:
        assert text.endswith(LINK)
    words = " ".join(p.strip() for p in (title, body) if p.strip())
    if len(words) + (len(LINK) + 1 if link else 0) <= limit:
        assert text.startswith(words)
