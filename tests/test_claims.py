"""Every JWT claim is checked at the edge: present but malformed, of the wrong type or out of range is a
401 (REST, SSE) or a 4001 close (WebSocket), and in SQL an error (28000), never "absent" and never a 500.

Tokens here are signed by hand, so a claim can hold anything JSON (or Python's json) can spell: NaN,
1e400, 10**400, lone surrogates; pyjwt's encoder would refuse some of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect

from tests.server import JWT_SECRET, ServerProcess
from tests.test_realtime import closed_with, recv, recv_until

LATEST_TIME = 253402300799  # the end of year 9999, the latest exp/nbf/iat accepted
LEEWAY = 30  # JWT_LEEWAY's default
ABSENT = object()  # a claim left out of the token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_text(payload: str) -> str:
    """An HS256 token with the test secret over this exact payload text."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(payload.encode("utf-8", "surrogatepass"))
    mac = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def mint(**claims: Any) -> str:
    """A validly signed token; exp defaults to an hour from now; a claim given as ABSENT is left out."""
    payload = {"exp": int(time.time()) + 3600, **claims}
    return sign_text(json.dumps({k: v for k, v in payload.items() if v is not ABSENT}))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the people and data of these tests ----------------------------------------------------------------

ORG_A = uuid.uuid4()
ORG_B = uuid.uuid4()
ALICE = uuid.uuid4()  # in org A
BOB = uuid.uuid4()  # in org B


@pytest.fixture(scope="module")
def world(server: ServerProcess, server_owner_url: str) -> dict[str, str]:
    """Alice in org A, Bob in org B, one notification each, and an org default of B's; their ids."""
    with psycopg.connect(server_owner_url, autocommit=True) as conn:
        conn.execute("SET ROLE notify_service")
        conn.execute("SELECT notify.upsert_recipient_v2(%s, 'alice@example.com', org_id => %s)", (ALICE, ORG_A))
        conn.execute("SELECT notify.upsert_recipient_v2(%s, 'bob@example.org', org_id => %s)", (BOB, ORG_B))
        ids = {
            name: str(conn.execute("SELECT notify.send(%s, 'task', %s)", (user, f"for {name}")).fetchone()[0])  # type: ignore[index]
            for name, user in (("alice", ALICE), ("bob", BOB))
        }
        conn.execute("RESET ROLE")
        conn.execute(
            "INSERT INTO notify.org_notification_preferences (org_id, notification_type, email_enabled) "
            "VALUES (%s, 'task', false)",
            (ORG_B,),
        )
    return ids


def bob_state(server_owner_url: str) -> tuple[Any, ...]:
    """Everything an erasure or a preference write of Bob's org would change."""
    with psycopg.connect(server_owner_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM notify.recipients WHERE user_id = %(u)s), "
            "(SELECT count(*) FROM notify.notifications WHERE user_id = %(u)s), "
            "(SELECT coalesce(jsonb_agg(to_jsonb(o) ORDER BY o.notification_type), '[]') "
            "   FROM notify.org_notification_preferences AS o WHERE o.org_id = %(o)s), "
            "(SELECT count(*) FROM notify.audit_log WHERE action = 'user.erased')",
            {"u": BOB, "o": ORG_B},
        ).fetchone()
    assert row is not None
    return tuple(row)


# --- the classes of bad claims ---------------------------------------------------------------------------

UUID_TEXT = str(ORG_B)
MALFORMED_UUIDS = [
    "acme", 42, 0, "", None, True, [UUID_TEXT], {"id": UUID_TEXT}, "{" + UUID_TEXT + "}", f"urn:uuid:{UUID_TEXT}",
    ORG_B.hex, f" {UUID_TEXT}", f"{UUID_TEXT}\n", UUID_TEXT[:-1], UUID_TEXT + "0", UUID_TEXT.replace("-", "_"),
    "00000000-0000-0000-0000-00000000000g", 1.5,
]  # fmt: skip
BAD_TIMES = [10**400, "soon", str(int(time.time()) + 3600), True, [int(time.time()) + 3600], None, -1, LATEST_TIME + 1,
             {"t": 1}]  # fmt: skip
BAD_ROLES = [["admin"], 5, None, "", "Admin", "dba", {"role": "admin"}, True, "notify_admin"]
BAD_SUBS = [123, ["x"], {"id": "x"}, "", "x" * 256, None, True, 1e3]
BAD_AUDS = [{"a": 1}, 5, [1], [None], True, [["x"]]]


def raw_payloads() -> list[tuple[str, str]]:
    """Payloads json.dumps cannot write as such: numbers past float's range, NaN, and deep or odd values."""
    sub = json.dumps(str(BOB))
    exp = int(time.time()) + 3600
    deep = "[" * 40 + "]" * 40
    return [
        ("exp-1e400", f'{{"sub": {sub}, "exp": 1e400}}'),
        ("exp-NaN", f'{{"sub": {sub}, "exp": NaN}}'),
        ("exp-Infinity", f'{{"sub": {sub}, "exp": Infinity}}'),
        ("nbf-1e400", f'{{"sub": {sub}, "exp": {exp}, "nbf": 1e400}}'),
        ("nbf-minus-1e400", f'{{"sub": {sub}, "exp": {exp}, "nbf": -1e400}}'),
        ("iat-10e400", f'{{"sub": {sub}, "exp": {exp}, "iat": {"9" * 400}}}'),
        ("extra-NaN", f'{{"sub": {sub}, "exp": {exp}, "x": NaN}}'),
        ("extra-1e400", f'{{"sub": {sub}, "exp": {exp}, "x": [1e400]}}'),
        ("extra-NUL", f'{{"sub": {sub}, "exp": {exp}, "x": "a\\u0000b"}}'),
        ("extra-lone-surrogate", f'{{"sub": {sub}, "exp": {exp}, "x": "\\ud800"}}'),
        ("extra-key-NUL", f'{{"sub": {sub}, "exp": {exp}, "\\u0000": 1}}'),
        ("extra-deep", f'{{"sub": {sub}, "exp": {exp}, "x": {deep}}}'),
        ("extra-very-deep", f'{{"sub": {sub}, "exp": {exp}, "x": {"[" * 1100 + "]" * 1100}}}'),
    ]


def user_tokens() -> Iterator[Any]:
    """Tokens of user Bob with one claim malformed: each must be refused like no token at all."""
    for value in MALFORMED_UUIDS:
        yield pytest.param(mint(sub=str(BOB), org_id=value), id=f"org_id={value!r}"[:60])
    for claim in ("exp", "nbf", "iat"):
        for value in BAD_TIMES:
            yield pytest.param(mint(sub=str(BOB), **{claim: value}), id=f"{claim}={value!r}"[:60])
    for value in BAD_ROLES:
        yield pytest.param(mint(sub=str(BOB), role=value), id=f"role={value!r}"[:60])
    for value in [*BAD_SUBS, *(v for v in MALFORMED_UUIDS if isinstance(v, str))]:
        yield pytest.param(mint(sub=value), id=f"sub={value!r}"[:60])
    for value in BAD_AUDS:
        yield pytest.param(mint(sub=str(BOB), aud=value), id=f"aud={value!r}"[:60])
    for name, payload in raw_payloads():
        yield pytest.param(sign_text(payload), id=name)
    yield pytest.param(mint(sub=ABSENT), id="no-sub")
    yield pytest.param(mint(sub=str(BOB), exp=ABSENT), id="no-exp")
    yield pytest.param(mint(sub=str(BOB), exp=int(time.time()) - 3600), id="expired")
    yield pytest.param(mint(sub=str(BOB), nbf=int(time.time()) + 3600), id="not-yet-valid")


USER_TOKENS = list(user_tokens())


def admin_token(org_id: Any) -> str:
    return mint(sub="ops", role="admin", org_id=org_id)


# --- REST ------------------------------------------------------------------------------------------------


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("org_id", MALFORMED_UUIDS, ids=lambda v: repr(v)[:40])
def test_an_admin_token_with_a_malformed_org_id_is_refused_not_a_dba(
    server: ServerProcess, server_owner_url: str, world: dict[str, str], org_id: Any
) -> None:
    before = bob_state(server_owner_url)
    headers = bearer(admin_token(org_id))
    with httpx.Client(base_url=server.url, timeout=10, headers=headers) as client:
        assert_refused(client.get(f"/api/v1/admin/orgs/{ORG_B}/preferences"))
        assert_refused(client.put(f"/api/v1/admin/orgs/{ORG_B}/preferences", json={"email_enabled": True}))
        assert_refused(client.get(f"/api/v1/notifications/{world['bob']}/explain"))
        assert_refused(client.delete(f"/api/v1/admin/users/{BOB}"))
        assert_refused(client.post("/api/v1/notifications", json={"user_id": str(BOB), "type": "task", "title": "x"}))
    assert bob_state(server_owner_url) == before, "nothing of org B was erased or changed"


def test_well_formed_org_ids_scope_an_admin_and_uppercase_is_the_same_org(
    server: ServerProcess, server_owner_url: str, world: dict[str, str]
) -> None:
    """The baseline the refusals above are measured against: a DBA sees B, A's admin does not."""
    before = bob_state(server_owner_url)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        dba = bearer(mint(sub="ops", role="admin"))
        assert client.get(f"/api/v1/admin/orgs/{ORG_B}/preferences", headers=dba).status_code == 200
        assert client.get(f"/api/v1/notifications/{world['bob']}/explain", headers=dba).status_code == 200
        for org in (str(ORG_A), str(ORG_A).upper()):
            other = bearer(admin_token(org))
            assert client.get(f"/api/v1/admin/orgs/{ORG_B}/preferences", headers=other).status_code == 404
            assert client.get(f"/api/v1/notifications/{world['bob']}/explain", headers=other).status_code == 404
            assert client.delete(f"/api/v1/admin/users/{BOB}", headers=other).status_code == 404
            assert client.get(f"/api/v1/notifications/{world['alice']}/explain", headers=other).status_code == 200
        for org in (str(ORG_B), str(ORG_B).upper()):
            own = client.get(f"/api/v1/admin/orgs/{ORG_B}/preferences", headers=bearer(admin_token(org)))
            assert own.status_code == 200 and own.json()["org_id"] == str(ORG_B)
    assert bob_state(server_owner_url) == before


@pytest.mark.parametrize("token", USER_TOKENS)
def test_a_user_token_with_any_malformed_claim_is_a_401(
    server: ServerProcess, world: dict[str, str], token: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=10, headers=bearer(token)) as client:
        assert_refused(client.get("/api/v1/notifications"))
        assert_refused(client.get(f"/api/v1/notifications/{world['bob']}/explain"))


@pytest.mark.parametrize("claim", ["role", "sub", "exp", "nbf", "aud", "org_id"])
def test_admin_and_service_tokens_with_a_malformed_claim_are_a_401(
    server: ServerProcess, server_owner_url: str, world: dict[str, str], claim: str
) -> None:
    values = {"role": BAD_ROLES, "sub": BAD_SUBS, "exp": BAD_TIMES, "nbf": BAD_TIMES[:-3], "aud": BAD_AUDS,
              "org_id": MALFORMED_UUIDS[:6]}[claim]  # fmt: skip
    before = bob_state(server_owner_url)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for role in ("admin", "service"):
            for value in values:
                claims = {"sub": "ops", "role": role, claim: value}
                headers = bearer(mint(**claims))
                assert_refused(client.delete(f"/api/v1/admin/users/{BOB}", headers=headers))
                body = {"user_id": str(BOB), "type": "task", "title": "x"}
                assert_refused(client.post("/api/v1/notifications", json=body, headers=headers))
    assert bob_state(server_owner_url) == before


def test_the_refusal_says_which_claim(server: ServerProcess) -> None:
    cases = {
        mint(sub=str(BOB), org_id="acme"): "org_id claim must be a uuid",
        mint(sub=str(BOB), role=["admin"]): "role claim must be one of: admin, authenticated, service",
        mint(sub=str(BOB), exp=10**400): "exp claim must be a number of seconds since 1970",
        mint(sub=str(BOB), nbf="1700000000"): "nbf claim must be a number",  # pyjwt takes digits
        mint(sub=123): "invalid token",  # pyjwt's own check: sub must be a string
        mint(sub="{" + str(BOB) + "}"): "sub claim of a user token must be a uuid",
        mint(sub=str(BOB), aud={"a": 1}): "aud claim must be a string or a list of strings",
        sign_text(f'{{"sub": "{BOB}", "exp": {int(time.time()) + 60}, "x": NaN}}'): "no NaN or infinity",
    }
    for token, words in cases.items():
        answer = httpx.get(f"{server.url}/api/v1/notifications", headers=bearer(token))
        assert answer.status_code == 401 and words in answer.json()["error"]["message"], answer.text


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": LATEST_TIME}, id="exp-end-of-9999"),
        pytest.param({"exp": time.time() + 3600.5}, id="exp-fraction"),
        pytest.param({"nbf": 0, "iat": int(time.time())}, id="nbf-and-iat"),
        pytest.param({"aud": "anyone"}, id="aud-string"),
        pytest.param({"aud": ["a", "b"]}, id="aud-list"),
        pytest.param({"role": "authenticated", "org_id": str(ORG_B).upper()}, id="uppercase-org"),
        pytest.param({"x": {"deep": [1, 2.5, None, "é", 10**40]}}, id="extra-claims"),
    ],
)
def test_well_formed_claims_at_the_edges_of_the_rules_are_accepted(
    server: ServerProcess, world: dict[str, str], claims: dict[str, Any]
) -> None:
    for sub in (str(BOB), str(BOB).upper()):
        answer = httpx.get(f"{server.url}/api/v1/notifications", headers=bearer(mint(sub=sub, **claims)))
        assert answer.status_code == 200, answer.text
        assert [n["id"] for n in answer.json()["items"]] == [world["bob"]]


# --- WebSocket -------------------------------------------------------------------------------------------


# A longer URL is refused by the HTTP server itself (414) before notifyd reads it.
MAX_URL_TOKEN = 6000


async def refused_with_4001(ws: ClientConnection) -> None:
    code, events = await closed_with(ws)
    assert code == 4001 and ws.protocol.close_rcvd is not None, "a close frame with 4001 arrived"
    assert [e["code"] for e in events if e["type"] == "error"][-1:] == ["AUTH_FAILED"]


@pytest.mark.parametrize("token", USER_TOKENS)
async def test_websocket_refuses_malformed_claims_with_a_4001_close_frame(server: ServerProcess, token: str) -> None:
    if len(token) < MAX_URL_TOKEN:
        async with connect(f"{server.ws_url}?token={token}", compression=None) as ws:
            await refused_with_4001(ws)
    async with connect(server.ws_url, compression=None) as ws:
        await ws.send(json.dumps({"type": "authenticate", "token": token}))
        await refused_with_4001(ws)


@pytest.mark.parametrize("token", USER_TOKENS[::4])
async def test_a_malformed_token_mid_session_ends_it_with_4001(server: ServerProcess, token: str) -> None:
    async with connect(f"{server.ws_url}?token={mint(sub=str(BOB))}", compression=None) as ws:
        assert (await recv(ws))["type"] == "authenticated"
        await recv_until(ws, "unread_count")
        await ws.send(json.dumps({"type": "authenticate", "token": token}))
        await refused_with_4001(ws)


async def test_the_latest_exp_opens_a_websocket_and_the_timer_holds(server: ServerProcess) -> None:
    """exp at the end of year 9999: accepted, and its expiry timer neither overflows nor fires."""
    async with connect(f"{server.ws_url}?token={mint(sub=str(BOB), exp=LATEST_TIME)}", compression=None) as ws:
        assert await recv(ws) == {"type": "authenticated", "user_id": str(BOB)}
        await recv_until(ws, "unread_count")
        await ws.send(json.dumps({"type": "authenticate", "token": mint(sub=str(BOB), exp=LATEST_TIME - 0.5)}))
        assert (await recv(ws))["type"] == "authenticated"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"


# --- SSE -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", USER_TOKENS[::3])
async def test_sse_refuses_malformed_claims_with_a_401(server: ServerProcess, token: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for answer in (
            await client.get("/api/v1/notifications/stream", params={"token": token}),
            await client.get("/api/v1/notifications/stream", headers=bearer(token)),
        ):
            assert_refused(answer)


# --- SQL -------------------------------------------------------------------------------------------------


SQL_MALFORMED = [v for v in MALFORMED_UUIDS if v is not None] + [None]


@pytest.mark.parametrize("org_id", SQL_MALFORMED, ids=lambda v: repr(v)[:40])
def test_current_org_id_raises_on_a_malformed_claim(db: psycopg.Connection[Any], as_role: Any, org_id: Any) -> None:
    other = uuid.uuid4()
    db.execute("INSERT INTO notify.recipients (user_id, org_id) VALUES (%s, %s)", (other, uuid.uuid4()))
    db.execute("SELECT notify.send(%s, 'task', 'not yours')", (other,))
    claims = {"sub": "ops", "role": "admin", "org_id": org_id}
    for statement in (
        "SELECT notify.current_org_id()",
        "SELECT count(*) FROM notify.notifications",
        "SELECT count(*) FROM notify.recipients",
        f"SELECT notify.org_preferences('{uuid.uuid4()}')",
        f"SELECT notify.erase_user('{other}')",
    ):
        with (
            as_role("notify_admin", claims) as cur,
            pytest.raises(psycopg.errors.InvalidAuthorizationSpecification) as bad,
        ):
            cur.execute(statement)
        assert "the org_id claim must be a uuid string" in str(bad.value), statement
        assert bad.value.sqlstate == "28000"
    assert db.execute("SELECT count(*) FROM notify.recipients WHERE user_id = %s", (other,)).fetchone() == (1,)


def test_current_org_id_reads_well_formed_claims(as_role: Any) -> None:
    org = uuid.uuid4()
    for claims, expected in (
        ({"sub": "ops"}, None),
        ({"sub": "ops", "org_id": str(org)}, org),
        ({"sub": "ops", "org_id": str(org).upper()}, org),
    ):
        with as_role("notify_admin", claims) as cur:
            assert cur.execute("SELECT notify.current_org_id()").fetchone() == (expected,)


@pytest.mark.parametrize(
    ("role", "claims", "expected"),
    [
        ("notify_authenticated", {"sub": str(BOB)}, BOB),
        ("notify_authenticated", {"sub": str(BOB).upper(), "role": "authenticated"}, BOB),
        ("notify_authenticated", {}, None),
        ("notify_service", {"sub": "billing", "role": "service"}, None),
        ("notify_admin", {"sub": "dba"}, None),
        ("notify_admin", {"sub": "dba", "role": "admin"}, None),
    ],
)
def test_current_user_id_reads_well_formed_claims(as_role: Any, role: str, claims: Any, expected: Any) -> None:
    with as_role(role, claims) as cur:
        assert cur.execute("SELECT notify.current_user_id()").fetchone() == (expected,)


@pytest.mark.parametrize(
    ("role", "claims"),
    [
        ("notify_authenticated", {"sub": "nobody"}),
        ("notify_authenticated", {"sub": "{" + str(BOB) + "}"}),
        ("notify_authenticated", {"sub": BOB.hex}),
        ("notify_authenticated", {"sub": ""}),
        ("notify_service", {"sub": "billing", "role": "authenticated"}),
        ("notify_authenticated", {"sub": 123}),
        ("notify_authenticated", {"sub": None}),
        ("notify_authenticated", {"sub": [str(BOB)]}),
        ("notify_admin", {"sub": {"id": "dba"}}),
        ("notify_service", {"sub": 1.5, "role": "service"}),
    ],
)
def test_current_user_id_raises_on_a_malformed_sub(as_role: Any, role: str, claims: Any) -> None:
    statements = ["SELECT notify.current_user_id()"]
    if role == "notify_authenticated":
        statements += ["SELECT notify.unread_count()", "SELECT notify.mark_all_read()"]
    for statement in statements:
        with as_role(role, claims) as cur, pytest.raises(psycopg.errors.InvalidAuthorizationSpecification) as bad:
            cur.execute(statement)
        assert "the sub claim" in str(bad.value)


# --- the property ----------------------------------------------------------------------------------------

NOW = time.time()
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
UUID_LIKE = st.sampled_from(
    [str(ALICE), str(BOB), str(ALICE).upper(), "{" + str(BOB) + "}", BOB.hex, f"urn:uuid:{BOB}"]
)
ORG_LIKE = st.sampled_from([str(ORG_A), str(ORG_B), str(ORG_B).upper(), "{" + str(ORG_B) + "}", ORG_B.hex, "acme", ""])
FUTURE = st.integers(min_value=int(NOW) + 600, max_value=LATEST_TIME) | st.floats(
    min_value=NOW + 600, max_value=LATEST_TIME
)
PAST = st.integers(min_value=0, max_value=int(NOW) - 600)
RESERVED = {"sub", "role", "org_id", "exp", "nbf", "iat", "aud", "jti", "iss"}


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.just(ABSENT) | strategy


CLAIMS = st.fixed_dictionaries(
    {
        "sub": maybe(UUID_LIKE | st.sampled_from(["ops", "billing", ""]) | JSON),
        "role": maybe(st.sampled_from(["authenticated", "admin", "service"]) | JSON),
        "org_id": maybe(ORG_LIKE | JSON),
        "exp": maybe(FUTURE | PAST | JSON),
        "nbf": maybe(PAST | FUTURE | JSON),
        "aud": maybe(st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=2) | JSON),
        "extra": st.dictionaries(st.text(max_size=6).filter(lambda k: k not in RESERVED), JSON, max_size=3),
    }
)


def _time_ok(value: Any, *, future: bool) -> bool | None:
    """The rule for a NumericDate (docs/security.md); None when too close to now to call (the leeway's edge)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= LATEST_TIME:
        return False
    if abs(value - NOW) < LEEWAY + 120 + (time.time() - NOW):
        return None
    return value > NOW if future else value < NOW


def _storable(value: Any, depth: int = 32) -> bool:
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, list):
        return depth > 0 and all(_storable(v, depth - 1) for v in value)
    if isinstance(value, dict):
        return depth > 0 and all(_storable(k) and _storable(v, depth - 1) for k, v in value.items())
    return True


def well_formed(claims: dict[str, Any]) -> bool | None:
    """Whether docs/security.md's rules accept these claims (None: an exp or nbf too near now to tell)."""
    exp = claims.get("exp", ABSENT)
    if exp is ABSENT or exp is None:
        return False
    verdicts = [_time_ok(exp, future=True)]
    if claims.get("nbf", ABSENT) is not ABSENT:
        verdicts.append(_time_ok(claims["nbf"], future=False))
    if False in verdicts:
        return False
    role, sub = claims.get("role", "authenticated"), claims.get("sub", ABSENT)
    checks = [
        isinstance(role, str) and role in ("authenticated", "admin", "service"),
        isinstance(sub, str) and 0 < len(sub) <= 255,
        role != "authenticated" or (isinstance(sub, str) and _canonical(sub) is not None),
        "org_id" not in claims or (isinstance(claims["org_id"], str) and _canonical(claims["org_id"]) is not None),
        "aud" not in claims
        or isinstance(claims["aud"], str)
        or (isinstance(claims["aud"], list) and all(isinstance(a, str) for a in claims["aud"])),
        _storable(claims),
    ]
    if not all(checks):
        return False
    return None if None in verdicts else True


def _canonical(text: str) -> uuid.UUID | None:
    return uuid.UUID(text) if re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", text) else None


def canonical_token(claims: dict[str, Any]) -> str:
    """The plainest token of the same identity: role, sub and org_id, an hour's exp, nothing else."""
    plain: dict[str, Any] = {"sub": claims["sub"]}
    for name in ("role", "org_id"):
        if name in claims:
            plain[name] = claims[name]
    return mint(**plain)


def answers(client: httpx.Client, token: str, world: dict[str, str]) -> list[tuple[int, Any]]:
    got = []
    for path in (f"/api/v1/admin/orgs/{ORG_B}/preferences", f"/api/v1/notifications/{world['bob']}/explain",
                 "/api/v1/notifications"):  # fmt: skip
        response = client.get(path, headers=bearer(token))
        assert response.status_code < 500, (path, response.text)
        body = response.json()
        if response.status_code == 200 and path == "/api/v1/notifications":
            body = [n["id"] for n in body["items"]]
        got.append((response.status_code, body))
    return got


def test_arbitrary_claims_never_500_and_never_more_than_a_well_formed_token(
    server: ServerProcess, world: dict[str, str]
) -> None:
    canonical_answers: dict[str, list[tuple[int, Any]]] = {}

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(drawn=CLAIMS)
    def check(drawn: dict[str, Any]) -> None:
        extra = drawn.pop("extra")
        claims = {**extra, **{k: v for k, v in drawn.items() if v is not ABSENT}}
        token = sign_text(json.dumps(claims))
        with httpx.Client(base_url=server.url, timeout=10) as client:
            got = answers(client, token, world)
            verdict = well_formed(claims)
            if verdict is False:
                assert [status for status, _ in got] == [401, 401, 401], (claims, got)
            elif verdict is True:
                key = canonical_token(claims)
                identity = json.dumps({k: claims[k] for k in ("sub", "role", "org_id") if k in claims})
                if identity not in canonical_answers:
                    canonical_answers[identity] = answers(client, key, world)
                assert got == canonical_answers[identity], (claims, got)
                assert all(status != 401 for status, _ in got), (claims, got)

    check()
