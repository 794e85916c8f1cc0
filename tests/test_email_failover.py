"""E-mail failover from Resend to SMTP: the Resend stand-in failing, recovering and flapping, a real SMTP server
(aiosmtpd), a real worker, real PostgreSQL.

Every e-mail must arrive at exactly one of the two; an attempt whose answer never came (a timeout) retries
on Resend with its idempotency key and never moves to SMTP.
"""

from __future__ import annotations

import dataclasses
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from notifyd.core.config import Settings
from notifyd.domain.deliveries import RetryLater
from tests.server import ServerProcess, WorkerProcess, wait_for
from tests.standins.http import Response
from tests.standins.resend import ResendService, application_error
from tests.standins.smtp import SmtpService
from tests.test_digests import clock, mail_settings, one_held_item  # noqa: F401 - clock is a fixture
from tests.test_digests import send as digest_attempt
from tests.test_email import FROM_EMAIL, ONE_CLICK, mail_env, recipient, send


@pytest.fixture
def smtp_service() -> Iterator[SmtpService]:
    with SmtpService() as server:
        yield server


def failover_env(resend: ResendService, smtp: SmtpService) -> dict[str, str]:
    return mail_env(resend, SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp.port), SMTP_TLS="none")


@pytest.fixture
def worker(
    db: psycopg.Connection[Any],
    quick_retries: None,
    own_worker: Any,
    resend_service: ResendService,
    smtp_service: SmtpService,
) -> WorkerProcess:
    """Retries after a fifth of a second; two failures in a row open a circuit, a probe a second later."""
    db.execute("UPDATE notify.settings SET value = '10' WHERE key = 'delivery.max_attempts'")
    db.execute("UPDATE notify.settings SET value = '2' WHERE key = 'circuit.failures_to_open'")
    db.execute("UPDATE notify.settings SET value = '\"1 second\"' WHERE key = 'circuit.probe_after'")
    proc: WorkerProcess = own_worker(**failover_env(resend_service, smtp_service))
    return proc


def ledger(db: psycopg.Connection[Any], notification_id: uuid.UUID) -> dict[str, Any]:
    row = db.execute(
        "SELECT id, status, provider, attempts, repeats FROM notify.notification_deliveries "
        "WHERE notification_id = %s AND channel = 'email'",
        (notification_id,),
    ).fetchone()
    assert row is not None
    return dict(zip(("id", "status", "provider", "attempts", "repeats"), row, strict=True))


def all_sent(db: psycopg.Connection[Any], ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    def sent() -> dict[uuid.UUID, dict[str, Any]] | None:
        found = {n: ledger(db, n) for n in ids}
        return found if all(r["status"] == "sent" for r in found.values()) else None

    rows = wait_for(sent, timeout=60, what="every e-mail sent")
    assert isinstance(rows, dict)
    return rows


def metric(scraped: str, sample: str) -> float:
    """The value of one sample (name and labels, as written) of a /metrics page."""
    found = re.search(rf"^{re.escape(sample)} (\S+)$", scraped, re.MULTILINE)
    assert found is not None, f"{sample} not in /metrics"
    return float(found[1])


def circuit(db: psycopg.Connection[Any], provider: str) -> str:
    row = db.execute("SELECT state FROM notify_private.provider_circuits WHERE provider = %s", (provider,)).fetchone()
    assert row is not None
    return str(row[0])


def arrivals(resend: ResendService, smtp: SmtpService) -> tuple[Counter[str], Counter[str]]:
    """Delivery ids that arrived at Resend (its idempotency keys: a replay adds no e-mail) and at SMTP (Message-ID)."""
    at_resend = Counter(str(e.idempotency_key) for e in resend.emails)
    at_smtp = Counter(re.sub(r"^<([^@]+)@.*>$", r"\1", str(m["Message-ID"])) for m in smtp.messages)
    return at_resend, at_smtp


def exactly_once(db: psycopg.Connection[Any], resend: ResendService, smtp: SmtpService,
                 rows: dict[uuid.UUID, dict[str, Any]]) -> None:  # fmt: skip
    """Every delivery arrived at one provider once, the one the ledger names."""
    at_resend, at_smtp = arrivals(resend, smtp)
    for row in rows.values():
        key = str(row["id"])
        where = {"resend": at_resend[key], "smtp": at_smtp[key]}
        assert sorted(where.values()) == [0, 1], (key, where)
        assert where[row["provider"]] == 1, (key, row["provider"], where)
        assert row["repeats"] == 0
    assert set(at_resend) | set(at_smtp) == {str(r["id"]) for r in rows.values()}


def test_resend_failing_sends_new_email_over_smtp_and_recovering_takes_it_back(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess,
    resend_service: ResendService, smtp_service: SmtpService, own_server: Any,
) -> None:  # fmt: skip
    # Retries come sooner than the probe: the failed e-mail's third attempt finds the circuit open.
    db.execute("UPDATE notify.settings SET value = '\"3 seconds\"' WHERE key = 'circuit.probe_after'")
    resend_service.script(application_error(), application_error(), application_error())
    user = recipient(service, "ada@example.com")
    first = send(service, user, title="Failing over", data={"action_url": "https://app.example.com/tasks/7"})
    rows = all_sent(db, [first])
    assert rows[first]["provider"] == "smtp" and circuit(db, "resend") in ("open", "half_open")

    # What SMTP got is the same e-mail: both parts, the one-click unsubscribe headers, the tracked link.
    [message] = smtp_service.messages
    assert message["Subject"] == "Failing over" and message["To"] == "ada@example.com"
    assert FROM_EMAIL in message["From"]
    assert message["List-Unsubscribe"].startswith("<https://notify.example.com/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == ONE_CLICK
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None and text is not None
    assert "/t/click/" in html.get_content() and "/t/open/" in html.get_content()
    assert "Failing over" in text.get_content()
    assert resend_service.emails == []

    # /metrics of a serve process (not the worker that saw the failures) shows the open circuit and the errors.
    server: ServerProcess = own_server()
    scraped = httpx.get(f"{server.url}/metrics").text
    assert metric(scraped, 'notifyd_provider_errors_total{kind="server_error",provider="resend"}') >= 2
    assert metric(scraped, 'notifyd_provider_circuit_open{provider="resend"}') == 1
    explained = db.execute("SELECT notify.explain(%s)", (first,)).fetchone()
    assert explained is not None
    [email_decision] = [d for d in explained[0]["decisions"] if d["channel"] == "email"]
    assert email_decision["provider"] == "smtp"
    assert {p["provider"]: p["state"] for p in explained[0]["providers"]}["resend"] in ("open", "half_open")

    # Resend recovers (its script is spent): a probe after circuit.probe_after closes the circuit.
    later: list[uuid.UUID] = []

    def through_resend() -> bool:
        later.append(send(service, user, title="Back"))
        return bool(all_sent(db, later[-1:])[later[-1]]["provider"] == "resend")

    wait_for(through_resend, timeout=30, interval=0.3, what="an e-mail through Resend again")
    assert circuit(db, "resend") == "closed"
    assert metric(httpx.get(f"{server.url}/metrics").text, 'notifyd_provider_circuit_open{provider="resend"}') == 0
    exactly_once(db, resend_service, smtp_service, {n: ledger(db, n) for n in (first, *later)})


def test_a_timeout_retries_on_resend_with_its_key_and_never_moves_to_smtp(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess,
    resend_service: ResendService, smtp_service: SmtpService,
) -> None:  # fmt: skip
    db.execute("UPDATE notify.settings SET value = '1' WHERE key = 'circuit.failures_to_open'")
    db.execute("UPDATE notify.settings SET value = '\"1 hour\"' WHERE key = 'circuit.probe_after'")
    # Resend takes the e-mail but answers after the worker's deadline (2 s): the attempt sees a timeout.
    resend_service.script(Response(delay=3), to="slow@example.com")
    slow = send(service, recipient(service, "slow@example.com"))
    wait_for(lambda: circuit(db, "resend") == "open", timeout=15, what="Resend's circuit to open on the timeout")
    # New e-mail goes to SMTP now; the timed-out one keeps going to Resend with its key.
    fresh = send(service, recipient(service, "fresh@example.com"))
    rows = all_sent(db, [slow, fresh])
    assert rows[slow]["provider"] == "resend" and rows[slow]["attempts"] >= 2
    assert rows[fresh]["provider"] == "smtp"
    exactly_once(db, resend_service, smtp_service, rows)
    # Resend got the slow one's key more than once and sent it once.
    assert sum(1 for r in resend_service.requests if r.headers.get("Idempotency-Key") == str(rows[slow]["id"])) >= 2


def test_flapping_resend_every_email_arrives_at_exactly_one_of_the_two(
    db: psycopg.Connection[Any], service: psycopg.Connection[Any], worker: WorkerProcess,
    resend_service: ResendService, smtp_service: SmtpService,
) -> None:  # fmt: skip
    rng = random.Random(21)
    # Bursts of 5xx between runs of successes, for longer than the e-mails take.
    script: list[Response] = []
    while len(script) < 120:
        script += [application_error()] * rng.randint(1, 4) + [Response()] * rng.randint(1, 6)
    resend_service.script(*script)
    users = [recipient(service, f"user{i}@example.com") for i in range(30)]
    ids = []
    for n, user in enumerate(users):
        ids.append(send(service, user, title=f"Flap {n}"))
    rows = all_sent(db, ids)
    exactly_once(db, resend_service, smtp_service, rows)
    providers = Counter(r["provider"] for r in rows.values())
    assert providers["smtp"] > 0 and providers["resend"] > 0, providers


# --- digests: the same provider choice, in process (as tests/test_digests.py sends them) -------------------


def digest_ledger(db: psycopg.Connection[Any], item: uuid.UUID) -> tuple[str, str | None]:
    row = db.execute(
        "SELECT status, provider FROM notify.notification_deliveries WHERE notification_id = %s AND channel = 'email'",
        (item,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.fixture
def digest_settings(db: psycopg.Connection[Any], resend_service: ResendService, smtp_service: SmtpService) -> Settings:
    """Two failures in a row open Resend's circuit, which stays open for the test."""
    db.execute("UPDATE notify.settings SET value = '2' WHERE key = 'circuit.failures_to_open'")
    db.execute("UPDATE notify.settings SET value = '\"1 hour\"' WHERE key = 'circuit.probe_after'")
    db.execute("UPDATE notify.settings SET value = '10' WHERE key = 'delivery.max_attempts'")
    return dataclasses.replace(
        mail_settings(db, resend_service), smtp_host="127.0.0.1", smtp_port=smtp_service.port, smtp_tls="none"
    )


def test_a_digest_fails_over_to_smtp_while_resend_fails(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], digest_settings: Settings,  # noqa: F811
    resend_service: ResendService, smtp_service: SmtpService,
) -> None:  # fmt: skip
    _, item, digest_id = one_held_item(db, clock, "digest@example.com", "Over SMTP")
    resend_service.script(application_error(), application_error(), to="digest@example.com")
    for _ in range(2):
        with pytest.raises(RetryLater):
            digest_attempt(db, digest_settings, digest_id)
    assert circuit(db, "resend") == "open"
    assert digest_attempt(db, digest_settings, digest_id) == "sent"
    # SMTP got the digest itself: its id as the Message-ID, its one-click unsubscribe (of digests).
    [message] = smtp_service.messages
    assert message["Message-ID"].startswith(f"<{digest_id}@") and message["To"] == "digest@example.com"
    assert message["List-Unsubscribe"].startswith("<https://notify.example.com/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == ONE_CLICK
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and "Over SMTP" in text.get_content()
    assert resend_service.emails == []
    assert digest_ledger(db, item) == ("sent", "smtp")


def test_a_digest_whose_answer_never_came_retries_on_resend_never_smtp(
    db: psycopg.Connection[Any], clock: Callable[[datetime], None], digest_settings: Settings,  # noqa: F811
    resend_service: ResendService, smtp_service: SmtpService,
) -> None:  # fmt: skip
    db.execute("UPDATE notify.settings SET value = '1' WHERE key = 'circuit.failures_to_open'")
    _, item, digest_id = one_held_item(db, clock, "slow@example.com", "Pinned")
    # Resend takes the digest but answers after the deadline (2 s): the attempt sees a timeout.
    resend_service.script(Response(delay=3), to="slow@example.com")
    with pytest.raises(RetryLater):
        digest_attempt(db, digest_settings, digest_id)
    assert circuit(db, "resend") == "open" and digest_ledger(db, item) == ("held", "resend")

    # The circuit sends new e-mail to SMTP; this digest goes back to Resend with its key, which sends it once
    # (asked again while the first request is still being answered, Resend says so with a 409: retried).
    def attempt() -> bool:
        try:
            return digest_attempt(db, digest_settings, digest_id) == "sent"
        except RetryLater:
            return False

    wait_for(attempt, timeout=15, interval=0.5, what="the digest sent on retry")
    assert smtp_service.messages == [] and [e.to for e in resend_service.emails] == [["slow@example.com"]]
    keys = {r.headers.get("Idempotency-Key") for r in resend_service.requests if r.path == "/emails"}
    assert keys == {str(digest_id)}
    assert digest_ledger(db, item) == ("sent", "resend")
