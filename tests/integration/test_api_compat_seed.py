"""The original system's AI Course Generator and course editor against our API, request for request.

Every request here is built the way the seed's client code builds it (``src/lib/api/common.ts``:
``callEdgeFunction`` = POST + JSON body, ``callEdgeFunctionGet`` = GET + query string; in dev-agent mode
both send ``Authorization: Bearer <anon key>``, ``apikey`` and the agent headers ``x-agent-token``,
``x-organization-id``, ``x-user-id``), with the parameters of ``src/hooks/useMCP.ts``,
``useJobContext.ts``, ``useJobsList.ts`` and ``src/lib/api/jobs.ts``, and every field the pages read is
asserted. The API runs under uvicorn on loopback with real Postgres; the job is worked by the production
course worker (deterministic pack), as the daemon would.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from ignite_dagster.config import Settings
from ignite_dagster.course_jobs.worker import CourseWorker
from ignite_dagster.queue import JobQueue, NewMediaJob, TargetRef
from ignite_dagster.queue.lease import Lease
from tests.support.api_server import AGENT_TOKEN, api_settings, build_world, running_api

FN = "/functions/v1"
ORIGIN = "http://localhost:8080"
# A Supabase anon key is a JWT signed with the *project's* secret (not ours): our API must not take it for
# a user session, and must let the agent headers next to it authenticate.
ANON_KEY = jwt.encode({"iss": "supabase", "ref": "seedproject", "role": "anon", "iat": 1700000000,
                       "exp": 2000000000}, "some-other-projects-secret-0123456789abcdef", algorithm="HS256")
DEV_USER = str(uuid.uuid4())  # getDevUserId(): a random UUID per browser, audit text for us


def slugify_id_part(text: str) -> str:
    return re.sub(r"^-+|-+$", "", re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower().strip())))


def make_course_id_from_subject(subject: str) -> str:
    """src/lib/courseIds.ts makeCourseIdFromSubject: <slug>-<base36 millis><4 hex>."""
    millis, n, digits = int(time.time() * 1000), 0, ""
    n = millis
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return f"{slugify_id_part(subject) or 'course'}-{digits}{uuid.uuid4().hex[:4]}"[:64].rstrip("-")


def seed_get_headers(org: uuid.UUID) -> dict[str, str]:
    """callEdgeFunctionGet in dev-agent mode."""
    return {"Authorization": f"Bearer {ANON_KEY}", "apikey": ANON_KEY, "x-agent-token": AGENT_TOKEN,
            "x-organization-id": str(org), "x-user-id": DEV_USER}


def seed_post_headers(org: uuid.UUID) -> dict[str, str]:
    """callEdgeFunctionWithAgentToken (what callEdgeFunction does in dev-agent mode)."""
    return {"Content-Type": "application/json", **seed_get_headers(org)}


class SeedClient:
    """The seed's client functions, one method each, over a real HTTP client."""

    def __init__(self, http: httpx.Client, org: uuid.UUID):
        self.http, self.org = http, org

    def call(self, fn: str, payload: Any, idempotency_key: str | None = None) -> httpx.Response:
        headers = seed_post_headers(self.org)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self.http.post(f"{FN}/{fn}", content=json.dumps(payload), headers=headers)

    def get(self, fn: str, params: dict[str, str] | None = None, **headers: str) -> httpx.Response:
        return self.http.get(f"{FN}/{fn}", params=params, headers={**seed_get_headers(self.org), **headers})

    # useMCP.enqueueJob('ai_course_generate', payload) from AIPipelineV2.handleCreate
    def enqueue_job(self, payload: dict[str, Any]) -> httpx.Response:
        return self.call("enqueue-job", {"jobType": "ai_course_generate", "payload": payload}, str(uuid.uuid4()))

    # useMCP.getCourseJob / lib/api/jobs.getCourseJob
    def get_course_job(self, job_id: str, include_events: bool) -> httpx.Response:
        return self.get("get-course-job", {"id": job_id, "includeEvents": "true" if include_events else "false"})

    # useJobsList → useMCP.listCourseJobs({status, limit})
    def list_course_jobs(self, **params: Any) -> httpx.Response:
        return self.get("list-course-jobs", {k: str(v) for k, v in params.items() if v is not None})

    # useMCP.getCourse(courseId) from CourseEditorV3.loadCourse
    def get_course(self, course_id: str, **headers: str) -> httpx.Response:
        return self.get("get-course", {"courseId": course_id}, **headers)

    # useMCP.publishCourse(courseId, changelog)
    def publish_course(self, course_id: str, changelog: str | None) -> httpx.Response:
        body = {"courseId": course_id, "changelog": changelog}
        return self.call("publish-course", {k: v for k, v in body.items() if v is not None})

    # useMCP.getJobStatus(jobId)
    def get_job_status(self, job_id: str) -> httpx.Response:
        return self.get("job-status", {"jobId": job_id})


def page_payload(subject: str, grade: str = "3-5") -> dict[str, Any]:
    """AIPipelineV2.handleCreate's payload (notes left out when empty: JSON.stringify drops undefined)."""
    return {"course_id": make_course_id_from_subject(subject), "subject": subject.strip(), "grade": grade,
            "grade_band": grade, "items_per_group": 12, "mode": "options"}


def parse_js_date(text: str) -> datetime:
    """What ``new Date(text)`` must parse: ISO 8601 with an offset."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def work_job(world, job_id: str) -> None:
    """The production course worker on the job, as a run of the daemon would (claim, every stage)."""
    queue = JobQueue(world.db_url)
    (job,) = [j for j in queue.claim_course_jobs("compat-test", limit=10) if str(j.id) == job_id]
    CourseWorker(Settings(), queue, world.store, Lease(queue, 5.0)).process(job)
    assert queue.get(job.id).status == "done"


@pytest.fixture
def seed(db_url, tmp_path):
    w = build_world(db_url, tmp_path / "storage")
    with running_api(api_settings(), db_url, w.store, cors_origins=[ORIGIN]) as server, \
            httpx.Client(base_url=server.url, timeout=15) as http:
        w.http = http
        w.page = SeedClient(http, w.org_a)
        w.other_org_page = SeedClient(http, w.org_b)
        yield w


JOB_FIELDS = {"id", "status", "course_id", "subject", "grade_band", "grade", "items_per_group", "levels_count", "mode",
              "progress_stage", "progress_percent", "progress_message", "result_path", "error", "summary",
              "created_by", "created_at", "updated_at", "completed_at", "generation_duration_ms", "retry_count",
              "max_retries", "started_at", "last_heartbeat", "processing_duration_ms"}
EVENT_FIELDS = {"id", "job_id", "status", "step", "progress", "message", "created_at", "seq"}


def test_generate_course_flow_of_the_ai_pipeline_page(seed):
    page = seed.page
    payload = page_payload("Multiplication")
    r = page.enqueue_job(payload)
    assert r.status_code == 202, r.text
    result = r.json()
    assert result["ok"] is True and isinstance(result["jobId"], str)  # handleCreate: result.ok, result.jobId
    job_id = result["jobId"]

    # useJobContext: get-course-job?id=&includeEvents=true every 2 s while the job runs
    r = page.get_course_job(job_id, True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and set(body["job"]) >= JOB_FIELDS and isinstance(body["events"], list)
    job = body["job"]
    assert (job["id"], job["status"], job["course_id"]) == (job_id, "pending", payload["course_id"])
    assert (job["subject"], job["grade_band"], job["items_per_group"], job["mode"]) == ("Multiplication", "3-5", 12, "options")
    assert job["grade"] is None  # a band is no single grade (README: the grade mapping)
    parse_js_date(job["created_at"])

    work_job(seed, job_id)

    body = page.get_course_job(job_id, True).json()
    job, events = body["job"], body["events"]
    assert job["status"] == "done" and job["progress_percent"] == 100 and job["error"] is None
    assert job["progress_stage"] and isinstance(job["progress_message"], str)
    assert job["result_path"] and payload["course_id"] in job["result_path"]
    assert isinstance(job["summary"], dict) and parse_js_date(job["completed_at"]) >= parse_js_date(job["created_at"])
    assert isinstance(job["generation_duration_ms"], int)
    assert len(events) >= 6 and all(set(e) >= EVENT_FIELDS for e in events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)  # oldest first, the page shows the last 5
    assert all(e["job_id"] == job_id and (e["message"] or e["step"]) for e in events)
    progress = [e["progress"] for e in events if e["progress"] is not None]
    assert len(progress) >= 5 and progress == sorted(progress)  # the stages move forward (the job row says 100)

    # the resume offer on reload: getCourseJob(id, false) reads ok, job.status, job.created_at, job.course_id
    resumed = page.get_course_job(job_id, False).json()
    assert resumed["ok"] and resumed["events"] == [] and resumed["job"]["course_id"] == payload["course_id"]
    assert page.get("get-course-job", {"jobId": job_id}).json()["job"]["id"] == job_id  # jobId= works too

    # "Recent Courses": list-course-jobs?status=done&limit=5 every 5 s; reads jobs[].id, subject, created_at
    listed = page.list_course_jobs(status="done", limit=5)
    assert listed.status_code == 200, listed.text
    out = listed.json()
    assert out["ok"] and out["total"] == 1 and (out["limit"], out["offset"]) == (5, 0)
    (row,) = out["jobs"]
    assert (row["id"], row["subject"], row["status"]) == (job_id, "Multiplication", "done")
    parse_js_date(row["created_at"])

    # Edit → /admin/editor/<courseId> → useMCP.getCourse: an envelope {format, content} with content.items[]
    course = page.get_course(payload["course_id"])
    assert course.status_code == 200, course.text
    envelope = course.json()
    assert envelope["format"] == "practice" and envelope["id"] == payload["course_id"]
    content = envelope["content"]
    assert content["id"] == payload["course_id"] and isinstance(content["items"], list) and content["items"]
    assert content["groups"] and all(any(i["groupId"] == g["id"] for i in content["items"]) for g in content["groups"])
    assert content["title"] and content["levels"]
    etag = course.headers["etag"]
    assert etag.startswith('W/"')
    assert page.get_course(payload["course_id"], **{"If-None-Match": etag}).status_code == 304
    head = seed.http.head(f"{FN}/get-course", params={"courseId": payload["course_id"]},
                          headers=seed_get_headers(seed.org_a))
    assert head.status_code == 200 and head.headers["etag"] == etag and head.content == b""

    # useMCP.getJobStatus reads state, step, progress, message at the top level
    status = page.get_job_status(job_id).json()
    assert (status["jobId"], status["state"], status["progress"]) == (job_id, "done", 100)
    assert status["step"] and isinstance(status["message"], str)

    # publish: useMCP.publishCourse(courseId, changelog); the seed reads version, snapshotId, contentVersion, etag, publishedAt
    published = page.publish_course(payload["course_id"], "first release from the editor")
    assert published.status_code == 200, published.text
    pub = published.json()
    assert (pub["version"], pub["contentVersion"]) == (1, 1) and isinstance(pub["snapshotId"], int)
    assert isinstance(pub["etag"], int) and parse_js_date(pub["publishedAt"])
    with psycopg.connect(seed.db_url) as conn:
        row = conn.execute("SELECT id, change_summary FROM course_versions WHERE course_id = %s",
                           (payload["course_id"],)).fetchone()
    assert row == (pub["snapshotId"], "first release from the editor")


def test_the_pages_reads_stay_inside_the_organization(seed):
    payload = page_payload("Addition")
    job_id = seed.page.enqueue_job(payload).json()["jobId"]
    work_job(seed, job_id)
    other = seed.other_org_page
    for r in (other.get_course_job(job_id, True), other.get_course(payload["course_id"]), other.get_job_status(job_id)):
        assert r.status_code == 404, r.text
        assert r.json()["message"] == r.json()["error"]["message"] and r.json()["error"]["code"] == "not_found"
    assert other.list_course_jobs(status="done", limit=5).json()["jobs"] == []
    assert other.list_course_jobs(jobId=job_id).json()["total"] == 0
    assert seed.page.list_course_jobs(jobId=job_id).json()["total"] == 1


def test_list_course_jobs_filters_pages_and_post_body(seed):
    page = seed.page
    ids = [page.enqueue_job(page_payload(subject)).json()["jobId"] for subject in ("Addition", "Subtraction", "Water cycle")]
    newest_first = list(reversed(ids))
    pending = "pending"  # the world's own job of this organization is dead_letter
    out = page.list_course_jobs(status=pending, limit=2).json()
    assert [j["id"] for j in out["jobs"]] == newest_first[:2] and out["total"] == 3
    out = page.list_course_jobs(status=pending, limit=2, offset=2).json()
    assert [j["id"] for j in out["jobs"]] == newest_first[2:] and (out["total"], out["offset"]) == (3, 2)
    past = page.list_course_jobs(status=pending, offset=10).json()
    assert past["jobs"] == [] and past["total"] == 3  # past the end: no jobs, still the total
    assert [j["id"] for j in page.list_course_jobs(search="TRACT").json()["jobs"]] == [ids[1]]
    assert page.list_course_jobs(search="%").json()["total"] == 0  # a wildcard character is a character
    assert page.list_course_jobs(sinceHours=1).json()["total"] == 4  # with the world's dead-lettered job
    with psycopg.connect(seed.db_url, autocommit=True) as conn:
        conn.execute("UPDATE ai_course_jobs SET created_at = now() - interval '3 hours' WHERE id = %s", (ids[0],))
    assert {j["id"] for j in page.list_course_jobs(status=pending, sinceHours=2).json()["jobs"]} == set(ids[1:])
    # POST with the filters in the body (the original read req.json() for POST)
    posted = page.call("list-course-jobs", {"status": "pending", "limit": 1, "search": "water"})
    assert posted.status_code == 200 and [j["id"] for j in posted.json()["jobs"]] == [ids[2]]
    # refused, naming the parameter: over the page limit, a status the service does not have
    for params, name in (({"limit": 101}, "limit"), ({"status": "running"}, "status")):
        r = page.list_course_jobs(**params)
        assert r.status_code == 422 and name in r.json()["message"], r.text


def test_grade_options_of_the_page_map_or_are_refused_naming_the_field(seed):
    page = seed.page
    for band in ("K-2", "3-5", "6-8"):
        r = page.enqueue_job(page_payload("Addition", band))
        assert r.status_code == 202, r.text
        job = page.get_course_job(r.json()["jobId"], False).json()["job"]
        assert (job["grade_band"], job["grade"]) == (band, None)
    # "College" and "All" name no band of grades K..12: 4xx naming the field, nothing written, and a
    # message the page's toast can show (errorData.message)
    before = JobQueue(seed.db_url).list(limit=100)
    for option in ("College", "All"):
        r = page.enqueue_job(page_payload("Addition", option))
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["ok"] is False and body["error"]["code"] == "invalid_request"
        assert isinstance(body["message"], str) and "grade" in body["message"] and option in body["message"]
    # grade alone, gradeBand alone, and the original's other spellings
    r = page.enqueue_job({"courseId": "spelled-camel", "subject": "Addition", "gradeBand": "3-5", "itemsPerGroup": 4,
                          "mode": "options"})
    assert r.status_code == 202, r.text
    job = page.get_course_job(r.json()["jobId"], False).json()["job"]
    assert (job["course_id"], job["grade_band"], job["items_per_group"]) == ("spelled-camel", "3-5", 4)
    r = page.enqueue_job({"course_id": "grade-only", "subject": "Addition", "grade": "6-8", "mode": "options"})
    assert r.status_code == 202 and page.get_course_job(r.json()["jobId"], False).json()["job"]["grade_band"] == "6-8"
    # conflicting spellings: 422 naming the field
    for conflict, name in (({"grade": "3-5", "grade_band": "6-8"}, "grade"), ({"gradeBand": "K-2", "grade_band": "3-5"}, "gradeBand"),
                           ({"courseId": "other-id"}, "courseId")):
        p = {**page_payload("Addition"), **conflict}
        r = page.enqueue_job(p)
        assert r.status_code == 422 and name in r.json()["message"], r.text
    assert len(JobQueue(seed.db_url).list(limit=100)) == len(before) + 2  # the two accepted above


def test_every_error_body_carries_a_top_level_message(seed):
    page = seed.page

    def check(r: httpx.Response, status: int) -> None:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["ok"] is False and body["message"] == body["error"]["message"] and body["message"]
        assert body["requestId"] == r.headers["x-request-id"] and body["error"]["code"]

    check(page.enqueue_job({"subject": "Addition"}), 422)  # validation
    bad_token = {**seed_get_headers(seed.org_a), "x-agent-token": "wrong"}
    check(seed.http.get(f"{FN}/list-course-jobs", headers=bad_token), 401)  # auth
    check(page.get_course_job(str(uuid.uuid4()), True), 404)  # not found
    check(page.get_course("no-such-course"), 404)
    check(page.call("requeue-job", {"jobId": str(seed.job_b), "jobTable": "ai_course_jobs"}), 404)  # another org's
    pending = page.enqueue_job(page_payload("Addition")).json()["jobId"]
    check(page.call("requeue-job", {"jobId": pending, "jobTable": "ai_course_jobs"}), 409)  # conflict
    check(seed.http.get(f"{FN}/no-such-function", headers=seed_get_headers(seed.org_a)), 404)  # unknown route
    check(seed.http.put(f"{FN}/get-course-job", headers=seed_get_headers(seed.org_a)), 405)


def test_a_crash_answers_500_with_the_envelope_and_message(db_url, tmp_path):
    """The last-resort handler (an unexpected exception in a route) speaks the same envelope."""
    from ignite_dagster import db
    from ignite_dagster.api.app import create_app
    from tests.support.api_server import ApiServer

    w = build_world(db_url, tmp_path / "storage")
    pool = db.make_pool(db_url, max_size=2, name="compat-crash")
    app = create_app(api_settings(), pool, w.store)

    def crash() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/functions/v1/crash-for-test", crash)
    server = ApiServer(app).start()
    try:
        r = httpx.get(f"{server.url}/functions/v1/crash-for-test")
        assert r.status_code == 500
        assert r.json()["message"] == r.json()["error"]["message"] and r.json()["error"]["code"] == "internal_error"
    finally:
        server.stop()
        pool.close()


def test_json_bodies_are_read_whatever_the_content_type(seed):
    headers = {**seed_post_headers(seed.org_a), "Content-Type": "text/plain;charset=UTF-8"}
    body = json.dumps({"jobType": "ai_course_generate", "payload": page_payload("Division")})
    r = seed.http.post(f"{FN}/enqueue-job", content=body, headers=headers)
    assert r.status_code == 202, r.text
    no_type = {k: v for k, v in seed_post_headers(seed.org_a).items() if k != "Content-Type"}
    r = seed.http.post(f"{FN}/list-course-jobs", content=json.dumps({"limit": 1}), headers=no_type)
    assert r.status_code == 200 and r.json()["limit"] == 1
    r = seed.http.post(f"{FN}/enqueue-job", content="not json", headers=headers)
    assert r.status_code == 422 and "not valid JSON" in r.json()["message"]


ASKED = ["authorization", "x-client-info", "apikey", "content-type", "x-region", "x-retry-count", "traceparent",
         "baggage", "x-agent-token", "x-organization-id", "x-user-id", "idempotency-key"]


def test_preflight_allows_the_headers_a_configured_origin_asks_for(seed):
    for method in ("POST", "GET", "HEAD"):
        pre = seed.http.options(f"{FN}/enqueue-job", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": ", ".join(ASKED)})
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
        assert set(ASKED) <= allowed
        assert {"GET", "POST", "OPTIONS", "HEAD"} <= {m.strip() for m in pre.headers["access-control-allow-methods"].split(",")}
    r = seed.http.get(f"{FN}/list-course-jobs", headers={**seed_get_headers(seed.org_a), "Origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN and "ETag" in r.headers["access-control-expose-headers"]
    # an origin that is not configured gets no CORS allowance at all
    other = seed.http.options(f"{FN}/enqueue-job", headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-region"})
    assert "access-control-allow-origin" not in other.headers and other.status_code >= 400
    simple = seed.http.get(f"{FN}/list-course-jobs", headers={**seed_get_headers(seed.org_a), "Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_list_jobs_honours_the_media_library_job_type(seed):
    """MediaLibraryPanel: list-jobs?jobType=image&status=done&limit=20 lists image jobs, never course jobs."""
    page = seed.page
    course_job = page.enqueue_job(page_payload("Addition")).json()["jobId"]
    queue = JobQueue(seed.db_url)
    media = queue.enqueue_media(NewMediaJob(course_id="course-a", prompt="an apple", target_ref=TargetRef(
        type="item_stimulus", itemId=0)), organization_id=seed.org_a).job
    (claimed,) = queue.claim_media_jobs("compat", limit=1)
    assert queue.complete(claimed.id, "ai_media_jobs", claimed.attempt, {"url": "file:///apple.png"})
    out = page.get("list-jobs", {"jobType": "image", "status": "done", "limit": "20"}).json()
    assert [j["id"] for j in out["jobs"]] == [str(media.id)] and out["jobs"][0]["mediaType"] == "image"
    courses = page.get("list-jobs", {"jobType": "ai_course_generate"}).json()["jobs"]
    assert course_job in {j["id"] for j in courses} and str(media.id) not in {j["id"] for j in courses}
    r = page.get("list-jobs", {"jobType": "lessonkit_build"})
    assert r.status_code == 422 and "jobType" in r.json()["message"]


def test_ai_generate_media_takes_the_seeds_body(db_url, tmp_path):
    """generateMedia({prompt, kind: 'image', options: {aspectRatio, size, quality}}) exactly as the editor
    sends it → url and alt; quality reaches the image API; an aspectRatio that disagrees with the size is
    answered with the size's image and a note saying so; an option it cannot honour is a 422 naming it."""
    from tests.support.openai_server import OpenAICompatServer

    w = build_world(db_url, tmp_path / "storage")
    with OpenAICompatServer() as images, running_api(
            api_settings(image_model="test-image", image_base_url=images.base_url, image_api_key="k"),
            db_url, w.store) as server, httpx.Client(base_url=server.url, timeout=15) as http:
        page = SeedClient(http, w.org_a)
        r = page.call("ai-generate-media", {"prompt": "a red apple on a desk", "kind": "image",
                                             "options": {"aspectRatio": "1:1", "size": "1024x1024", "quality": "standard"}})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["url"] and out["alt"] == "a red apple on a desk" and (out["width"], out["height"]) == (1024, 1024)
        assert out["aspectRatio"] == "1:1" and out["notes"] == []
        assert images.requests[-1].json["size"] == "1024x1024" and images.requests[-1].json["quality"] == "standard"
        # CourseEditorV3 and the WYSIWYG actions send 16:9 with a square size: the size decides, as before
        r = page.call("ai-generate-media", {"prompt": "an apple", "kind": "image",
                                             "options": {"aspectRatio": "16:9", "size": "1024x1024", "quality": "hd"}})
        assert r.status_code == 200, r.text
        assert r.json()["aspectRatio"] == "1:1" and "options.aspectRatio" in r.json()["notes"][0]
        assert images.requests[-1].json["quality"] == "hd"
        # without a size, an aspectRatio the configured size cannot give is refused
        n = len(images.requests)
        for options, name in (({"aspectRatio": "16:9"}, "options.aspectRatio"),
                              ({"quality": "ultra"}, "options.quality"),
                              ({"voice": "alloy"}, "options.voice")):
            r = page.call("ai-generate-media", {"prompt": "an apple", "kind": "image", "options": options})
            assert r.status_code == 422 and name in r.json()["message"], r.text
        assert len(images.requests) == n  # refused before any image was asked for
        r = page.call("ai-generate-media", {"prompt": "an apple", "kind": "audio"})
        assert r.status_code == 422 and "kind" in r.json()["message"]
