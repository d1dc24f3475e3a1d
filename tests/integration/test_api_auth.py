"""The auth matrix, over real HTTP to a real uvicorn, against a real Postgres and real files.

Every refused request is also checked to have written nothing: no job row changed, no event, no
version, no catalog row, no stored file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from ignite_dagster.auth import (
    Authenticator,
    AuthError,
    Principal,
    can_read,
    can_write,
    check_auth_settings,
)
from ignite_dagster.config import ConfigError, Settings
from tests.support.api_server import (
    AGENT_TOKEN,
    AUDIENCE,
    ApiServer,
    _b64,
    agent_headers,
    api_settings,
    bearer,
    build_world,
    hs256_token,
    running_api,
    snapshot,
    unsigned_token,
)

ENQUEUE = "/functions/v1/enqueue-job"
STATUS = "/functions/v1/job-status"
LIST = "/functions/v1/list-jobs"
REQUEUE = "/functions/v1/requeue-job"
PUBLISH = "/functions/v1/publish-course"


def enqueue_body(course_id: str = "new-course") -> dict:
    return {"jobType": "ai_course_generate", "payload": {"course_id": course_id, "subject": "addition",
                                                         "grade": "3", "notes": "use apples"}}


@pytest.fixture(scope="module")
def world(postgres, tmp_path_factory):
    db_url = postgres.fresh()
    w = build_world(db_url, tmp_path_factory.mktemp("auth-storage"))
    with running_api(api_settings(), db_url, w.store) as server:
        w.server = server
        yield w


@pytest.fixture(scope="module")
def client(world):
    with httpx.Client(base_url=world.server.url, timeout=10) as c:
        yield c


def _expect(client: httpx.Client, world, method: str, path: str, headers: dict, status: int, code: str | None = None,
            **kwargs) -> dict:
    before = snapshot(world.db_url, world.root)
    r = client.request(method, path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    if status >= 400:
        assert body["ok"] is False and body["requestId"] == r.headers["x-request-id"]
        if code is not None:
            assert body["error"]["code"] == code, body
        assert snapshot(world.db_url, world.root) == before, "a refused request wrote something"
    return body


# -- who may do what: one row per case --------------------------------------------------------------


def _a_job(w) -> dict:
    return {"jobId": str(w.job_a)}


def _b_job(w) -> dict:
    return {"jobId": str(w.job_b)}


def _body(w) -> dict:
    return enqueue_body()


# (case id, method, path, headers(world), json-or-params(world), status, code)
CASES: list[tuple[str, str, str, Callable, Callable, int, str]] = [
    ("no credentials", "POST", ENQUEUE, lambda w: {}, _body, 401, "missing_credentials"),
    ("no credentials read", "GET", STATUS, lambda w: {}, _a_job, 401, "missing_credentials"),
    ("wrong agent token", "POST", ENQUEUE, lambda w: agent_headers(w.org_a, token="nope"), _body, 401,
     "invalid_credentials"),
    ("agent token prefix", "POST", ENQUEUE, lambda w: agent_headers(w.org_a, token=AGENT_TOKEN[:-1]), _body, 401,
     "invalid_credentials"),
    ("empty agent token", "POST", ENQUEUE, lambda w: agent_headers(w.org_a, token=""), _body, 401,
     "invalid_credentials"),
    ("agent without org header", "POST", ENQUEUE, lambda w: {"x-agent-token": AGENT_TOKEN, "x-user-id": "bot"},
     _body, 400, "organization_required"),
    ("agent malformed org", "POST", ENQUEUE, lambda w: agent_headers("not-a-uuid"), _body, 400,
     "invalid_organization_id"),
    ("agent unknown org", "POST", ENQUEUE, lambda w: agent_headers(uuid.uuid4()), _body, 403,
     "unknown_organization"),
    ("agent bad audit id", "POST", ENQUEUE, lambda w: agent_headers(w.org_a, user="x" * 300), _body, 400,
     "invalid_user_id"),
    ("expired jwt", "POST", ENQUEUE, lambda w: w.token("editor_a", exp_in=-3600), _body, 401, "token_expired"),
    ("wrong signature", "POST", ENQUEUE,
     lambda w: bearer(hs256_token(w.users["editor_a"], secret="another-secret-of-the-same-length-0123456")),
     _body, 401, "invalid_token"),
    ("alg none", "POST", ENQUEUE, lambda w: bearer(unsigned_token(w.users["editor_a"])), _body, 401,
     "invalid_token"),
    ("alg none superadmin read", "GET", STATUS, lambda w: bearer(unsigned_token(w.users["superadmin"])), _a_job,
     401, "invalid_token"),
    ("wrong audience", "POST", ENQUEUE, lambda w: w.token("editor_a", aud="someone-else"), _body, 401,
     "invalid_token"),
    ("no audience", "POST", ENQUEUE, lambda w: w.token("editor_a", aud=None), _body, 401, "invalid_token"),
    ("sub not a uuid", "POST", ENQUEUE, lambda w: bearer(hs256_token("service_role")), _body, 401,
     "invalid_token"),
    ("not a jwt", "POST", ENQUEUE, lambda w: bearer("garbage"), _body, 401, "invalid_token"),
    ("basic auth", "POST", ENQUEUE, lambda w: {"Authorization": "Basic dXNlcjpwYXNz"}, _body, 401,
     "invalid_token"),
    ("viewer enqueues", "POST", ENQUEUE, lambda w: w.token("viewer_a"), _body, 403, "forbidden"),
    ("viewer requeues", "POST", REQUEUE, lambda w: w.token("viewer_a"), _a_job, 403, "forbidden"),
    ("viewer publishes", "POST", PUBLISH, lambda w: w.token("viewer_a"), lambda w: {"courseId": w.course_a}, 403,
     "forbidden"),
    ("no-role user enqueues", "POST", ENQUEUE, lambda w: w.token("nobody"), _body, 403, "forbidden"),
    ("no-role user reads", "GET", STATUS, lambda w: w.token("nobody"), _a_job, 404, "not_found"),
    ("editor A reads B's job", "GET", STATUS, lambda w: w.token("editor_a"), _b_job, 404, "not_found"),
    ("editor A reads B's job, table given", "GET", STATUS, lambda w: w.token("editor_a"),
     lambda w: {**_b_job(w), "jobTable": "ai_course_jobs"}, 404, "not_found"),
    ("editor A requeues B's job", "POST", REQUEUE, lambda w: w.token("editor_a"), _b_job, 404, "not_found"),
    ("editor A publishes B's course", "POST", PUBLISH, lambda w: w.token("editor_a"),
     lambda w: {"courseId": w.course_b}, 404, "not_found"),
    ("editor A lists org B", "GET", LIST, lambda w: w.token("editor_a"),
     lambda w: {"organizationId": str(w.org_b)}, 404, "organization_not_found"),
    ("editor A enqueues into org B", "POST", ENQUEUE,
     lambda w: {**w.token("editor_a"), "x-organization-id": str(w.org_b)}, _body, 404, "organization_not_found"),
    ("multi-org user without org header", "POST", ENQUEUE, lambda w: w.token("multi"), _body, 400,
     "organization_required"),
    ("superadmin without org header", "POST", ENQUEUE, lambda w: w.token("superadmin"), _body, 400,
     "organization_required"),
    ("superadmin into unknown org", "POST", ENQUEUE,
     lambda w: {**w.token("superadmin"), "x-organization-id": str(uuid.uuid4())}, _body, 404,
     "organization_not_found"),
    ("agent of A reads B's job", "GET", STATUS, lambda w: agent_headers(w.org_a), _b_job, 404, "not_found"),
    ("agent of A requeues B's job", "POST", REQUEUE, lambda w: agent_headers(w.org_a), _b_job, 404, "not_found"),
    ("agent of A publishes B's course", "POST", PUBLISH, lambda w: agent_headers(w.org_a),
     lambda w: {"courseId": w.course_b}, 404, "not_found"),
    ("agent of A, unknown course", "POST", PUBLISH, lambda w: agent_headers(w.org_a),
     lambda w: {"courseId": "no-such"}, 404, "not_found"),
    ("unknown job", "GET", STATUS, lambda w: w.token("superadmin"), lambda w: {"jobId": str(uuid.uuid4())}, 404,
     "not_found"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_auth_matrix(world, client, case):
    _, method, path, headers, data, status, code = case
    kwargs = {"params": data(world)} if method == "GET" else {"json": data(world)}
    _expect(client, world, method, path, headers(world), status, code, **kwargs)


def test_401_carries_www_authenticate_and_does_not_reveal_config(world, client):
    r = client.post(ENQUEUE, json=enqueue_body(), headers=agent_headers(world.org_a, token="x"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "AGENT_TOKEN" not in r.text


def test_allowed_reads(world, client):
    """Viewers read their organization; superadmins read everything; multi-org users list both."""
    body = _expect(client, world, "GET", STATUS, world.token("viewer_a"), 200, params={"jobId": str(world.job_a)})
    assert body["job"]["organizationId"] == str(world.org_a)
    _expect(client, world, "GET", STATUS, world.token("superadmin"), 200, params={"jobId": str(world.job_b)})
    _expect(client, world, "GET", STATUS, agent_headers(world.org_b), 200, params={"jobId": str(world.job_b)})
    listed = _expect(client, world, "GET", LIST, world.token("multi"), 200)
    assert {j["organizationId"] for j in listed["jobs"]} >= {str(world.org_a), str(world.org_b)}
    only_a = _expect(client, world, "GET", LIST, world.token("editor_a"), 200)
    assert {j["organizationId"] for j in only_a["jobs"]} == {str(world.org_a)}
    empty = _expect(client, world, "GET", LIST, world.token("nobody"), 200)
    assert empty["jobs"] == []


def test_editor_and_agent_writes_land_in_their_org(world, client):
    multi = _expect(client, world, "POST", ENQUEUE, {**world.token("multi"), "x-organization-id": str(world.org_b)},
                    202, json=enqueue_body("multi-b"))
    agent = _expect(client, world, "POST", ENQUEUE, agent_headers(world.org_a, user="preview-user-7"), 202,
                    json=enqueue_body("agent-a"))
    import psycopg

    with psycopg.connect(world.db_url) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT id, organization_id, created_by, requested_by FROM ai_course_jobs WHERE id = ANY(%s)",
            ([uuid.UUID(multi["jobId"]), uuid.UUID(agent["jobId"])],),
        )}
    assert rows[uuid.UUID(multi["jobId"])] == (world.org_b, world.users["multi"], None)
    # the agent's x-user-id is audit text only: never in created_by
    assert rows[uuid.UUID(agent["jobId"])] == (world.org_a, None, "preview-user-7")


def test_agent_auth_disabled_without_agent_token(postgres, tmp_path):
    db_url = postgres.fresh()
    w = build_world(db_url, tmp_path)
    with running_api(api_settings(agent_token=None), db_url, w.store) as server, httpx.Client(base_url=server.url) as c:
        before = snapshot(db_url, tmp_path)
        for token in (AGENT_TOKEN, "", "agent-auth-disabled"):
            r = c.post(ENQUEUE, json=enqueue_body(), headers=agent_headers(w.org_a, token=token))
            assert r.status_code == 401, r.text
            assert r.json()["error"]["message"] == "invalid agent token"
        assert snapshot(db_url, tmp_path) == before
        # users still work
        assert c.post(ENQUEUE, json=enqueue_body(), headers=w.token("editor_a")).status_code == 202


# -- JWKS mode ----------------------------------------------------------------------------------------


class JwksServer:
    """A real JWKS endpoint on loopback (uvicorn), serving the public half of the test keys."""

    def __init__(self, jwks: dict):
        app = FastAPI()
        app.get("/jwks.json")(lambda: jwks)
        self.server = ApiServer(app).start()
        self.url = f"{self.server.url}/jwks.json"

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def keys():
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_ec = ec.generate_private_key(ec.SECP256R1())
    jwk_ec = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    jwk_rsa = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk_ec.update(kid="ec-1", alg="ES256", use="sig")
    jwk_rsa.update(kid="rsa-1", alg="RS256", use="sig")
    server = JwksServer({"keys": [jwk_ec, jwk_rsa]})
    yield {"ec": ec_key, "rsa": rsa_key, "other_ec": other_ec, "url": server.url}
    server.stop()


@pytest.fixture
def jwks_world(postgres, tmp_path, keys):
    db_url = postgres.fresh()
    w = build_world(db_url, tmp_path)
    settings = api_settings(jwt_secret=None, jwt_jwks_url=keys["url"])
    with running_api(settings, db_url, w.store) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        w.client = c
        yield w


def _claims(sub: uuid.UUID, aud: str = AUDIENCE, exp_in: int = 300) -> dict:
    return {"sub": str(sub), "aud": aud, "exp": int(time.time()) + exp_in}


def _hs256_with_key(claims: dict, secret: bytes, kid: str) -> str:
    """HS256 signed with ``secret`` (here: the *public* key), built by hand — pyjwt refuses to."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(sig)}"


def test_jwks_accepts_asymmetric_tokens(jwks_world, keys):
    w = jwks_world
    user = w.users["editor_a"]
    for key, alg, kid in ((keys["ec"], "ES256", "ec-1"), (keys["rsa"], "RS256", "rsa-1")):
        token = jwt.encode(_claims(user), key, algorithm=alg, headers={"kid": kid})
        r = w.client.get(STATUS, params={"jobId": str(w.job_a)}, headers=bearer(token))
        assert r.status_code == 200, r.text


def test_jwks_refuses_confusion_and_forgeries(jwks_world, keys):
    w = jwks_world
    user = w.users["superadmin"]
    public_pem = keys["ec"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = {
        "HS256 signed with the public key": _hs256_with_key(_claims(user), public_pem, "ec-1"),
        "HS256 with the shared secret": hs256_token(user),
        "alg none": unsigned_token(user),
        "unknown kid": jwt.encode(_claims(user), keys["other_ec"], algorithm="ES256", headers={"kid": "nope"}),
        "right kid, wrong key": jwt.encode(_claims(user), keys["other_ec"], algorithm="ES256", headers={"kid": "ec-1"}),
        "alg swapped to ES256 on the RSA key": jwt.encode(
            _claims(user), keys["ec"], algorithm="ES256", headers={"kid": "rsa-1"}
        ),
        "expired": jwt.encode(_claims(user, exp_in=-600), keys["ec"], algorithm="ES256", headers={"kid": "ec-1"}),
        "wrong audience": jwt.encode(_claims(user, aud="x"), keys["ec"], algorithm="ES256", headers={"kid": "ec-1"}),
    }
    before = snapshot(w.db_url, w.root)
    for name, token in forged.items():
        r = w.client.post(ENQUEUE, json=enqueue_body(), headers={**bearer(token), "x-organization-id": str(w.org_a)})
        assert r.status_code == 401, (name, r.text)
    assert snapshot(w.db_url, w.root) == before


def test_jwks_unreachable_is_503_not_401(postgres, tmp_path, keys):
    db_url = postgres.fresh()
    w = build_world(db_url, tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/jwks.json"
    settings = api_settings(jwt_secret=None, jwt_jwks_url=dead)
    with running_api(settings, db_url, w.store) as server, httpx.Client(base_url=server.url) as c:
        token = jwt.encode(_claims(w.users["editor_a"]), keys["ec"], algorithm="ES256", headers={"kid": "ec-1"})
        r = c.get(STATUS, params={"jobId": str(w.job_a)}, headers=bearer(token))
        assert r.status_code == 503 and r.json()["error"]["code"] == "auth_unavailable"


# -- pure domain checks (no HTTP needed) --------------------------------------------------------------


def test_auth_settings_refusals():
    with pytest.raises(ConfigError, match="AGENT_TOKEN"):
        check_auth_settings(Settings())
    with pytest.raises(ConfigError, match="only one"):
        check_auth_settings(Settings(jwt_secret="s", jwt_jwks_url="http://x", jwt_audience="a"))
    with pytest.raises(ConfigError, match="JWT_AUDIENCE"):
        check_auth_settings(Settings(jwt_secret="s"))
    check_auth_settings(Settings(agent_token="t"))
    check_auth_settings(Settings(jwt_secret="s", jwt_audience="a"))


def test_role_helpers():
    a, b = uuid.uuid4(), uuid.uuid4()
    viewer = Principal(kind="user", user_id=uuid.uuid4(), roles={a: frozenset({"viewer"})})
    editor = Principal(kind="user", user_id=uuid.uuid4(), roles={a: frozenset({"editor"}), b: frozenset({"viewer"})})
    agent = Principal(kind="agent", audit_user="bot", roles={a: frozenset({"agent"})})
    admin = Principal(kind="user", user_id=uuid.uuid4(), is_superadmin=True)
    assert can_read(viewer, a) and not can_write(viewer, a) and not can_read(viewer, b)
    assert can_write(editor, a) and can_read(editor, b) and not can_write(editor, b)
    assert can_write(agent, a) and not can_read(agent, b)
    assert can_write(admin, a) and can_write(admin, b)
    assert agent.audit_text() == "bot" and editor.audit_text() is None
    assert Principal.operator("cli:alice").is_superadmin
    with pytest.raises(ValueError):
        Principal.operator("  ")


def test_authenticator_without_database_refuses_before_any_query():
    """Credential checks happen before the database is touched: a bogus URL is never dialled."""
    auth = Authenticator(api_settings(), "postgresql://nobody@127.0.0.1:1/none")
    for headers in ({}, {"x-agent-token": "wrong"}, {"authorization": "Bearer x"}):
        with pytest.raises(AuthError) as exc:
            auth.authenticate(headers)
        assert exc.value.status == 401


def test_agent_headers_take_precedence_over_authorization(world, client):
    """Browser clients of the original service send ``Authorization: Bearer <anon key>`` on every call;
    when agent headers are present they decide, whatever the bearer says — in both directions."""
    with_garbage_bearer = {**agent_headers(world.org_a), "Authorization": "Bearer anon.key.value"}
    _expect(client, world, "GET", STATUS, with_garbage_bearer, 200, params={"jobId": str(world.job_a)})
    wrong_agent_good_user = {**agent_headers(world.org_a, token="wrong"), **world.token("superadmin")}
    _expect(client, world, "GET", STATUS, wrong_agent_good_user, 401, "invalid_credentials",
            params={"jobId": str(world.job_a)})
