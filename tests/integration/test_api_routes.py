"""Routes over real HTTP: enqueue (idempotency, special requests, limits), status, list, requeue, health,
media, the error envelope and request ids, and the service's start-up refusals."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ignite_dagster import db
from ignite_dagster.api.app import create_app
from ignite_dagster.api.server import serve
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage.keys import special_requests_path
from ignite_dagster.storage.local import LocalObjectStore
from tests.support.api_server import (
    ApiServer,
    agent_headers,
    api_settings,
    build_world,
    running_api,
    snapshot,
)

ENQUEUE = "/functions/v1/enqueue-job"
STATUS = "/functions/v1/job-status"
LIST = "/functions/v1/list-jobs"
REQUEUE = "/functions/v1/requeue-job"
MEDIA = "/functions/v1/ai-generate-media"


def body(course_id: str = "fractions-intro", **payload) -> dict:
    p = {"course_id": course_id, "subject": "addition", "grade_band": "3-5", "items_per_group": 6, "mode": "options"}
    p.update(payload)
    return {"jobType": "ai_course_generate", "payload": p}


@pytest.fixture
def world(db_url, tmp_path):
    w = build_world(db_url, tmp_path / "storage")
    with running_api(api_settings(), db_url, w.store) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        w.client = c
        yield w


def test_enqueue_contract_and_special_requests(world):
    c = world.client
    r = c.post(ENQUEUE, json=body(notes="Use fruit examples.", study_text="Apples are red."),
               headers=world.token("editor_a"))
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["ok"] is True and out["status"] == "queued" and out["replayed"] is False
    assert out["requestId"] == r.headers["x-request-id"]
    job = JobQueue(world.db_url).get(uuid.UUID(out["jobId"]))
    assert job.organization_id == world.org_a and job.created_by == world.users["editor_a"]
    assert job.has_special_requests and job.grade_band == "3-5"
    saved = json.loads(world.store.get(special_requests_path(job.id)).data)
    assert saved == {"jobId": str(job.id), "notes": "Use fruit examples.", "study_text": "Apples are red."}


def test_idempotency_replay(world):
    c = world.client
    headers = {**world.token("editor_a"), "Idempotency-Key": "order-42"}
    first = c.post(ENQUEUE, json=body(notes="n"), headers=headers)
    second = c.post(ENQUEUE, json=body(notes="n"), headers=headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["jobId"] == second.json()["jobId"]
    assert second.json()["replayed"] is True and second.json()["jobStatus"] == "pending"

    # the replay reports the job's current status
    JobQueue(world.db_url).claim_course_jobs("w1", limit=10)
    third = c.post(ENQUEUE, json=body(notes="n"), headers=headers).json()
    assert third["jobId"] == first.json()["jobId"] and third["status"] == "processing"

    # same key, different request → conflict, nothing new
    before = snapshot(world.db_url, world.root)
    clash = c.post(ENQUEUE, json=body(course_id="other-course"), headers=headers)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_conflict"
    assert "course_id" in clash.json()["error"]["message"]
    assert snapshot(world.db_url, world.root) == before

    # keys are per organization: the same key elsewhere is another job
    other = c.post(ENQUEUE, json=body(), headers={**agent_headers(world.org_b), "Idempotency-Key": "order-42"})
    assert other.status_code == 202 and other.json()["jobId"] != first.json()["jobId"]


def test_concurrent_idempotent_enqueues_make_one_job(world):
    results: list[httpx.Response] = []
    url = world.client.base_url

    def go() -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            results.append(c.post(ENQUEUE, json=body(notes="x"),
                                  headers={**agent_headers(world.org_a), "Idempotency-Key": "race"}))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results).count(202) == 1
    assert {r.json()["jobId"] for r in results} == {results[0].json()["jobId"]}
    with psycopg.connect(world.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM ai_course_jobs WHERE idempotency_key = 'race'").fetchone()[0] == 1


def test_special_requests_failure_leaves_no_claimable_job(db_url, tmp_path):
    """Storage whose root is a *file*: every write fails for real; the enqueue must leave nothing behind."""
    w = build_world(db_url, tmp_path / "good")
    broken_root = tmp_path / "not-a-dir"
    broken_root.write_text("a file where the storage root should be")
    broken = LocalObjectStore(broken_root, None)
    with running_api(api_settings(), db_url, broken) as server, httpx.Client(base_url=server.url) as c:
        queue = JobQueue(db_url)
        queue.requeue(w.job_a, "ai_course_jobs")  # the world's jobs are not what we look for here
        queue.requeue(w.job_b, "ai_course_jobs")
        claimed_before = {j.id for j in queue.claim_course_jobs("drain", limit=100)}
        count_before = len(queue.list(limit=1000))

        r = c.post(ENQUEUE, json=body(notes="must be saved first"),
                   headers={**w.token("editor_a"), "Idempotency-Key": "k-broken"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
        assert "nothing was enqueued" in r.json()["error"]["message"]
        assert len(queue.list(limit=1000)) == count_before
        assert queue.find_by_idempotency_key(w.org_a, "k-broken") is None
        assert queue.claim_course_jobs("worker", limit=10) == []

        # a request without notes needs no storage and still works
        ok = c.post(ENQUEUE, json=body(), headers=w.token("editor_a"))
        assert ok.status_code == 202
        assert [j.id for j in queue.claim_course_jobs("worker", limit=10)] == [uuid.UUID(ok.json()["jobId"])]
        assert uuid.UUID(ok.json()["jobId"]) not in claimed_before

        health = c.get("/health")
        assert health.status_code == 503
        assert health.json()["checks"] == {"database": "ok", "storage": "unavailable"}
        assert health.json()["error"]["code"] == "unhealthy"


def test_rate_limit(db_url, tmp_path):
    w = build_world(db_url, tmp_path)
    with running_api(api_settings(enqueue_rate_per_minute=3), db_url, w.store) as server, \
            httpx.Client(base_url=server.url) as c:
        codes = [c.post(ENQUEUE, json=body(), headers=w.token("editor_a")).status_code for _ in range(3)]
        assert codes == [202, 202, 202]
        before = snapshot(db_url, tmp_path)
        limited = c.post(ENQUEUE, json=body(), headers=w.token("editor_a"))
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 20
        # invalid requests are limited too (the bucket is checked before the body)
        assert c.post(ENQUEUE, json={}, headers=w.token("editor_a")).status_code == 429
        assert snapshot(db_url, tmp_path) == before
        # per caller: another user, and an agent, have their own buckets
        assert c.post(ENQUEUE, json=body(), headers=w.token("admin_a")).status_code == 202
        assert c.post(ENQUEUE, json=body(), headers=agent_headers(w.org_a, user="u1")).status_code == 202
        # reads are not limited
        assert c.get(LIST, headers=w.token("editor_a")).status_code == 200


def test_oversize_body_is_413_and_writes_nothing(world):
    c = world.client
    before = snapshot(world.db_url, world.root)
    big = json.dumps(body(notes="x" * 1_200_000)).encode()
    r = c.post(ENQUEUE, content=big, headers={**world.token("editor_a"), "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert r.headers["x-request-id"]

    def chunks():  # no Content-Length: the limit must hold for chunked bodies too
        for _ in range(120):
            yield b"x" * 10_000

    r = c.post(ENQUEUE, content=chunks(), headers={**world.token("editor_a"), "content-type": "application/json"})
    assert r.status_code == 413
    assert snapshot(world.db_url, world.root) == before


def test_validation_errors_name_the_field(world):
    c = world.client
    h = world.token("editor_a")
    cases = {
        "payload.course_id": body(course_id="Bad Id!"),
        "payload.items_per_group": body(items_per_group=1000),
        "payload.mode": body(mode="essay"),
        "payload.grade_band": body(grade_band="banana"),
        "payload.surprise": body(surprise=1),
        "jobType": {"jobType": "ai_media_generate", "payload": body()["payload"]},
    }
    for field, data in cases.items():
        r = c.post(ENQUEUE, json=data, headers=h)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and field in err["message"], (field, err)
        assert any(f["field"] == field for f in err["fields"])
    missing_grade = body()
    del missing_grade["payload"]["grade_band"]
    r = c.post(ENQUEUE, json=missing_grade, headers=h)
    assert r.status_code == 422 and "grade_band" in r.json()["error"]["message"]
    r = c.post(ENQUEUE, content=b"{not json", headers={**h, "content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]["message"]
    r = c.get(STATUS, params={"jobId": "nope"}, headers=h)
    assert r.status_code == 422 and "jobId" in r.json()["error"]["message"]
    r = c.post(ENQUEUE, json=body(), headers={**h, "Idempotency-Key": "k" * 300})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["error"]["message"]


def test_request_id_and_envelope_everywhere(world):
    c = world.client
    r = c.get("/health", headers={"X-Request-Id": "trace-abc.123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-abc.123"
    assert r.json()["requestId"] == "trace-abc.123"
    r = c.get("/health", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"
    uuid.UUID(r.headers["x-request-id"])
    for method, path in (("GET", "/nope"), ("DELETE", "/health"), ("GET", STATUS)):
        r = c.request(method, path, headers={"X-Request-Id": "rid-1"})
        assert r.headers["x-request-id"] == "rid-1"
        env = r.json()
        assert env["ok"] is False and env["requestId"] == "rid-1" and env["error"]["code"] and env["error"]["message"]
    assert c.get("/nope").status_code == 404
    assert c.delete("/health").status_code == 405


def test_job_status_progress_events_and_list(world):
    c = world.client
    queue = JobQueue(world.db_url)
    out = c.post(ENQUEUE, json=body("status-course"), headers=agent_headers(world.org_a)).json()
    job_id = uuid.UUID(out["jobId"])
    (claimed,) = [j for j in queue.claim_course_jobs("w", limit=10) if j.id == job_id]
    queue.progress(job_id, "ai_course_jobs", claimed.attempt, "fill", 40, "filling items")
    queue.event(job_id, "ai_course_jobs", claimed.attempt, "fill", "info", 40, "filling items", {"items": 12})

    r = c.get(STATUS, params={"jobId": str(job_id)}, headers=world.token("viewer_a"))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["status"] == "processing" and data["job"]["progress"] == {
        "stage": "fill", "percent": 40, "message": "filling items"}
    assert data["job"]["requestedBy"] == "agent-user-1" and data["job"]["createdBy"] is None
    assert [e["step"] for e in data["events"]] == ["fill"] and data["events"][0]["meta"] == {"items": 12}

    listed = c.get(LIST, params={"status": "processing", "courseId": "status-course"}, headers=world.token("editor_a"))
    assert [j["id"] for j in listed.json()["jobs"]] == [str(job_id)]
    limited = c.get(LIST, params={"limit": 1}, headers=world.token("superadmin")).json()
    assert limited["count"] == 1


def test_requeue(world):
    c = world.client
    r = c.post(REQUEUE, json={"jobId": str(world.job_a)}, headers=world.token("editor_a"))
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert JobQueue(world.db_url).get(world.job_a).status == "pending"
    again = c.post(REQUEUE, json={"jobId": str(world.job_a)}, headers=world.token("editor_a"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_requeueable"
    by_agent = c.post(REQUEUE, json={"jobId": str(world.job_b), "jobTable": "ai_course_jobs"},
                      headers=agent_headers(world.org_b, user="ops-bot"))
    assert by_agent.status_code == 200
    events = JobQueue(world.db_url).events(world.job_b)
    assert events[-1].step == "requeued" and "ops-bot" in (events[-1].message or "")


def test_live_media_not_available_without_image_model(world):
    before = snapshot(world.db_url, world.root)
    r = world.client.post(MEDIA, json={"prompt": "a red apple"}, headers=world.token("editor_a"))
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_available"
    assert "IGNITE_IMAGE_MODEL" in r.json()["error"]["message"] or "not available" in r.json()["error"]["message"]
    assert world.client.post(MEDIA, json={"prompt": "x"}, headers=world.token("viewer_a")).status_code == 403
    assert world.client.post(MEDIA, json={"prompt": "x"}).status_code == 401
    assert snapshot(world.db_url, world.root) == before


def test_health_ok(world):
    r = world.client.get("/health")
    assert r.status_code == 200 and r.json()["ok"] is True
    assert r.json()["checks"] == {"database": "ok", "storage": "ok"}


def test_openapi_served_with_envelope_models(world):
    spec = world.client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) == {
        ENQUEUE, STATUS, LIST, REQUEUE, "/functions/v1/publish-course", MEDIA, "/health",
        "/functions/v1/list-courses", "/functions/v1/request-course-media", "/functions/v1/get-course-job",
        "/functions/v1/list-course-jobs", "/functions/v1/get-course"}
    enqueue = paths[ENQUEUE]["post"]
    assert enqueue["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert {"200", "202", "401", "403", "413", "429"} <= set(enqueue["responses"])
    assert enqueue["security"] == [{"BearerJWT": []}, {"AgentToken": [], "AgentOrganization": []}]
    assert "security" not in paths["/health"]["get"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_serve_refuses_a_schema_that_is_behind(postgres, tmp_path):
    """`ignite api` checks the schema before binding a port, naming what to run."""
    raw = postgres.create_database(migrate=False)
    settings = api_settings(database_url=raw, storage_root=tmp_path)
    with pytest.raises(db.SchemaError, match="ignite db migrate"):
        serve(settings)
    with pytest.raises(Exception, match="AGENT_TOKEN"):
        serve(api_settings(agent_token=None, jwt_secret=None, database_url=raw, storage_root=Path(tmp_path)))


def test_contract_payload_is_the_domain_request():
    """The HTTP payload model is CourseRequest itself (made strict): one list of fields."""
    from ignite_dagster.api.schemas import EnqueuePayload
    from ignite_dagster.course.request import CourseRequest

    assert issubclass(EnqueuePayload, CourseRequest)
    assert EnqueuePayload.model_fields.keys() == CourseRequest.model_fields.keys()


def test_the_largest_valid_request_is_accepted_not_413(world):
    """Every text field at its maximum length in characters outside the BMP, JSON-escaped as Python does
    (12 bytes a character): the schema says it is valid, so the body limit must let it through."""
    from ignite_dagster.course.request import NOTES_MAX, STUDY_TEXT_MAX, SUBJECT_MAX

    wide = "\U0001F34E"  # one character, a surrogate pair when escaped
    p = body("max-size", subject="a" + wide * (SUBJECT_MAX - 1), notes=wide * NOTES_MAX, study_text=wide * STUDY_TEXT_MAX,
             locale="zh-Hant-TW", groups_count=12, levels_count=20, study_texts_count=20, items_per_group=100)
    raw = json.dumps(p).encode()
    assert len(raw) > 800_000
    r = world.client.post(ENQUEUE, content=raw, headers={**world.token("editor_a"), "content-type": "application/json"})
    assert r.status_code == 202, r.text[:300]
    saved = json.loads(world.store.get(special_requests_path(uuid.UUID(r.json()["jobId"]))).data)
    assert len(saved["study_text"]) == STUDY_TEXT_MAX


def test_api_modules_import_downwards_only():
    """schemas and dependencies know nothing of routes or app; routes knows nothing of app."""
    import ast
    from pathlib import Path

    import ignite_dagster.api as api

    root = Path(api.__file__).parent
    forbidden = {"schemas": {"routes", "app", "dependencies", "server"}, "dependencies": {"routes", "app", "server"},
                 "routes": {"app", "server"}, "errors": {"routes", "app", "schemas", "dependencies", "server"}}
    for module, banned in forbidden.items():
        tree = ast.parse((root / f"{module}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {f"ignite_dagster.api.{b}" for b in banned} & imported, (module, imported)


def test_payload_types_are_exact(world):
    c, h = world.client, agent_headers(world.org_a)
    accepted = [
        {"grade": 4}, {"grade": 4.0}, {"grade": "k"}, {"grade_band": "K-2"}, {"grade_band": "9-12"},
        {"grade_band": "3-5", "items_per_group": 3.0}, {"grade": "7", "notes": "nul \x00 is fine in notes"},
    ]
    for extra in accepted:
        p = {"course_id": "exact", "subject": "addition", **extra}
        r = c.post(ENQUEUE, json={"jobType": "ai_course_generate", "payload": p}, headers=h)
        assert r.status_code == 202, (extra, r.text)
    refused = [
        {"grade": "4", "items_per_group": "5"}, {"grade": True}, {"grade": 13}, {"grade_band": "5-3"},
        {"grade_band": "3-5", "wants_images": "yes"}, {"grade_band": "3-5", "subject": "nul\x00"},
        {"grade_band": "3-5", "subject": "   "}, {"grade_band": "3-5", "items_per_group": 2.5},
        {"grade_band": None, "grade": None},
    ]
    before = snapshot(world.db_url, world.root)
    for extra in refused:
        p = {"course_id": "exact", "subject": "addition", **extra}
        r = c.post(ENQUEUE, json={"jobType": "ai_course_generate", "payload": p}, headers=h)
        assert r.status_code == 422, (extra, r.text)
    lone = b'{"jobType": "ai_course_generate", "payload": {"course_id": "x", "subject": "a\\ud800", "grade": 3}}'
    r = c.post(ENQUEUE, content=lone, headers={**h, "content-type": "application/json"})
    assert r.status_code == 422 and "subject" in r.json()["error"]["message"]
    assert snapshot(world.db_url, world.root) == before


def test_database_outage_is_503_not_500(postgres, tmp_path):
    """Drop the database under a running service: callers get 503 (retryable), never a 500."""
    db_url = postgres.fresh()
    w = build_world(db_url, tmp_path)

    def configure(conn):
        conn.autocommit = True
        conn.row_factory = dict_row

    pool = ConnectionPool(db_url, min_size=1, max_size=1, timeout=1.0, configure=configure, open=True)
    pool.wait()
    server = ApiServer(create_app(api_settings(), pool, w.store)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.get("/health").status_code == 200
            name = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
            with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            for _ in range(2):
                r = c.get(STATUS, params={"jobId": str(w.job_a)}, headers=agent_headers(w.org_a))
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "database_unavailable" and r.headers["retry-after"]
            health = c.get("/health")
            assert health.status_code == 503 and health.json()["checks"]["database"] == "unavailable"
    finally:
        server.stop()
        pool.close(timeout=1)


def test_live_media_through_a_real_openai_compatible_server(db_url, tmp_path):
    """The route with a configured image model, against the scripted OpenAI-compatible HTTP server."""
    from tests.support.openai_server import IMAGES, OpenAICompatServer, api_error, rate_limited

    w = build_world(db_url, tmp_path)
    with OpenAICompatServer() as provider:
        settings = api_settings(openai_api_key="sk-test", openai_base_url=provider.base_url, image_model="img-1")
        with running_api(settings, db_url, w.store) as server, httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post(MEDIA, json={"prompt": "a red apple", "style": "flat", "size": "512x512"},
                       headers=w.token("editor_a"))
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["ok"] is True and out["path"].startswith("media-library/tmp/ai-generated/")
            assert w.store.get(out["path"]).data[:8] == b"\x89PNG\r\n\x1a\n"
            assert out["details"]["model"] == "img-1"
            assert "a red apple" in provider.requests_to(IMAGES)[-1].json["prompt"]

            provider.enqueue(IMAGES, rate_limited(retry_after=7))
            busy = c.post(MEDIA, json={"prompt": "x"}, headers=agent_headers(w.org_a))
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "provider_rate_limited"
            assert busy.headers["retry-after"] == "7"

            provider.enqueue(IMAGES, api_error(400, "your request was rejected by the safety system",
                                               code="content_policy_violation"))
            refused = c.post(MEDIA, json={"prompt": "x"}, headers=agent_headers(w.org_a))
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "content_refused"


def test_cors_for_browser_frontends(db_url, tmp_path):
    w = build_world(db_url, tmp_path)
    origin = "https://app.example"
    with running_api(api_settings(), db_url, w.store, cors_origins=[origin]) as server, \
            httpx.Client(base_url=server.url) as c:
        pre = c.options(ENQUEUE, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "authorization,x-agent-token,content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin
        r = c.post(ENQUEUE, json=body(), headers={**w.token("editor_a"), "Origin": origin})
        assert r.status_code == 202 and r.headers["access-control-allow-origin"] == origin
        assert "X-Request-Id" in r.headers["access-control-expose-headers"]
        other = c.options(ENQUEUE, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers


def test_job_status_names_the_dagster_run_and_links_it_only_when_the_ui_url_is_configured(db_url, tmp_path):
    w = build_world(db_url, tmp_path / "storage")
    queue = JobQueue(db_url)
    for ui_url, expect_link in ((None, None), ("http://dagster.example:3000/", "http://dagster.example:3000/runs/")):
        with running_api(api_settings(dagster_ui_url=ui_url), db_url, w.store) as server, \
                httpx.Client(base_url=server.url, timeout=10) as c:
            out = c.post(ENQUEUE, json=body(f"run-link-{bool(ui_url):d}"), headers=agent_headers(w.org_a)).json()
            job_id = uuid.UUID(out["jobId"])
            before = c.get(STATUS, params={"jobId": str(job_id)}, headers=agent_headers(w.org_a)).json()["job"]
            assert (before["dagsterRunId"], before["dagsterRunUrl"]) == (None, None)
            (claimed,) = [j for j in queue.claim_course_jobs("w", limit=10) if j.id == job_id]
            assert queue.set_run_id(job_id, "ai_course_jobs", claimed.attempt, "run-abc")
            assert not queue.set_run_id(job_id, "ai_course_jobs", claimed.attempt + 1, "run-other")  # fenced
            job = c.get(STATUS, params={"jobId": str(job_id)}, headers=agent_headers(w.org_a)).json()["job"]
            assert job["dagsterRunId"] == "run-abc"
            assert job["dagsterRunUrl"] == (expect_link + "run-abc" if expect_link else None)
