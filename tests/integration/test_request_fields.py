"""One request, end to end: every field the API accepts is stored on the job and honoured by the
production worker; the same Idempotency-Key with different content is a 409 that writes nothing; every
patterned field refuses a trailing newline. Real HTTP (uvicorn), real Postgres, the real CourseWorker.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from ignite_dagster.api.schemas import EnqueuePayload, JobOut, camel
from ignite_dagster.config import Settings
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course_jobs.worker import CourseWorker
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.lease import Lease
from ignite_dagster.storage.keys import course_path, special_requests_path
from tests.support.api_server import agent_headers, api_settings, build_world, running_api, snapshot
from tests.support.openai_server import CHAT, OpenAICompatServer, ScriptedCourseModel

ENQUEUE = "/functions/v1/enqueue-job"

# Two requests that, between them, set every field to a value other than its default. A deterministic
# pack course (an English pack honours "en-GB": same language) and a model course in French with notes,
# a study text of its own and images.
PACK_REQUEST: dict[str, Any] = {
    "course_id": "add-every-field", "subject": "addition", "grade": "4", "items_per_group": 4, "mode": "numeric",
    "levels_count": 2, "study_texts_count": 0, "groups_count": 2, "strategy": "deterministic", "locale": "en-GB",
}
MODEL_REQUEST: dict[str, Any] = {
    "course_id": "fr-every-field", "subject": "addition", "grade_band": "3-5", "items_per_group": 3,
    "notes": "Utilise des fruits dans chaque problème.", "study_text": "Les pommes sont rouges et les poires sont vertes.",
    "study_texts_count": 2, "groups_count": 3, "levels_count": 3, "wants_images": True, "strategy": "llm",
    "locale": "fr", "item_images": ["stimulus:all", "options:4"], "tags": ["fruit", "spring-term"],
    "visibility": "public",
}


def payload(**fields: Any) -> dict[str, Any]:
    return {"jobType": "ai_course_generate", "payload": fields}


@pytest.fixture
def world(db_url, tmp_path):
    w = build_world(db_url, tmp_path / "storage")
    # the API and the workers share the model settings (a request needing the model is refused without one)
    settings = api_settings(openai_api_key="test-key", text_model="test-model", image_model="gpt-image-1")
    with running_api(settings, db_url, w.store) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        w.client = c
        yield w


def enqueue(world, fields: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {**agent_headers(world.org_a), **({"Idempotency-Key": key} if key else {})}
    return world.client.post(ENQUEUE, json=payload(**fields), headers=headers)


def run_worker(world, job_id: uuid.UUID, settings: Settings | None = None) -> dict[str, Any]:
    """Claim ``job_id`` and run every stage of the production worker on it; the stored course.json."""
    queue = JobQueue(world.db_url)
    (job,) = [j for j in queue.claim_course_jobs("fields-test", limit=10) if j.id == job_id]
    work = CourseWorker(settings or Settings(), queue, world.store, Lease(queue, 5.0)).process(job)
    assert queue.get(job_id).status == "done"
    return json.loads(world.store.get(course_path(work.job.course_id)).data)


def test_the_two_requests_cover_every_field_with_a_non_default_value():
    fields = CourseRequest.model_fields
    covered = set(PACK_REQUEST) | set(MODEL_REQUEST)
    assert covered == set(fields), f"add the missing fields to a request below: {set(fields) - covered}"
    for request in (PACK_REQUEST, MODEL_REQUEST):
        for name, value in request.items():
            assert value != fields[name].default or fields[name].is_required(), name


def test_every_request_field_has_a_column(db_url):
    with psycopg.connect(db_url) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'ai_course_jobs'")}
    assert set(CourseRequest.column_names()) | {"has_special_requests", "request_fingerprint"} <= columns
    assert not {"notes", "study_text"} & columns  # stored apart, in object storage


def test_api_payload_is_the_request_and_job_views_show_every_column():
    assert issubclass(EnqueuePayload, CourseRequest)
    assert EnqueuePayload.model_fields.keys() == CourseRequest.model_fields.keys()
    assert {camel(n) for n in CourseRequest.column_names()} <= set(JobOut.model_fields)


def test_pack_course_stores_and_honours_every_field(world):
    r = enqueue(world, PACK_REQUEST)
    assert r.status_code == 202, r.text
    job_id = uuid.UUID(r.json()["jobId"])
    job = JobQueue(world.db_url).get(job_id)
    expected = CourseRequest.model_validate(PACK_REQUEST).columns()
    assert {n: getattr(job, n) for n in CourseRequest.column_names()} == expected
    assert (job.grade, job.grade_band, job.locale, job.groups_count) == ("4", "3-5", "en-GB", 2)
    shown = world.client.get("/functions/v1/job-status", params={"jobId": str(job_id)},
                             headers=agent_headers(world.org_a)).json()["job"]
    assert (shown["locale"], shown["groupsCount"], shown["levelsCount"]) == ("en-GB", 2, 2)

    doc = run_worker(world, job_id)
    assert doc["id"] == "add-every-field" and doc["gradeBand"] == "3-5"  # grade 4 → band 3-5
    assert doc["locale"] == "en-GB"
    assert len(doc["groups"]) == 2 and len(doc["levels"]) == 2
    assert [sum(1 for i in doc["items"] if i["groupId"] == g["id"]) for g in doc["groups"]] == [4, 4]
    assert {i["mode"] for i in doc["items"]} == {"numeric"} and all("answer" in i for i in doc["items"])
    assert not doc.get("studyTexts")  # study_texts_count 0, though the pack has a study text
    assert doc["generation"]["strategy"] == "deterministic" and doc["generation"]["packId"] == "addition.g3-5"
    assert "addition" in doc["subject"].lower()


def test_model_course_in_french_honours_notes_study_text_and_images(world):
    with OpenAICompatServer() as provider:
        provider.respond_with(CHAT, ScriptedCourseModel())
        settings = Settings(openai_api_key="test-key", openai_base_url=provider.base_url, text_model="test-model")
        r = enqueue(world, MODEL_REQUEST)
        assert r.status_code == 202, r.text
        job_id = uuid.UUID(r.json()["jobId"])
        job = JobQueue(world.db_url).get(job_id)
        assert {n: getattr(job, n) for n in CourseRequest.column_names()} == \
            CourseRequest.model_validate(MODEL_REQUEST).columns()
        assert job.has_special_requests
        saved = json.loads(world.store.get(special_requests_path(job_id)).data)
        assert (saved["notes"], saved["study_text"]) == (MODEL_REQUEST["notes"], MODEL_REQUEST["study_text"])

        doc = run_worker(world, job_id, settings)
        prompts = [req.text() for req in provider.requests_to(CHAT)]
    assert doc["locale"] == "fr" and doc["generation"]["strategy"] == "llm"
    assert len(doc["groups"]) == 3 and len(doc["levels"]) == 3 and len(doc["items"]) == 9
    assert len(doc["studyTexts"]) == 2 and all("[IMAGE:" in t["content"] for t in doc["studyTexts"])
    assert prompts and all("Language (locale): fr" in p for p in prompts)
    assert all(MODEL_REQUEST["notes"] in p and MODEL_REQUEST["study_text"] in p for p in prompts)
    with psycopg.connect(world.db_url) as conn:  # wants_images: one media job per image marker; item_images:
        # a stimulus for each of the 9 items, one image per option of item 4
        kinds = conn.execute("SELECT target_ref->>'type', count(*) FROM ai_media_jobs WHERE course_job_id = %s "
                             "GROUP BY 1 ORDER BY 1", (job_id,)).fetchall()
        assert kinds == [("item_option", 4), ("item_stimulus", 9), ("study_text", 2)]
        tags, visibility = conn.execute("SELECT tags, visibility FROM course_metadata WHERE id = %s",
                                        (MODEL_REQUEST["course_id"],)).fetchone()
    assert visibility == "public"
    assert tags == ["subject:addition", "grade-band:3-5", "locale:fr", "strategy:llm", "fruit", "spring-term"]


# -- idempotency -------------------------------------------------------------------------------------------


def files_with_bytes(world) -> dict[str, bytes]:
    return {str(p.relative_to(world.root)): p.read_bytes() for p in world.root.rglob("*")
            if p.is_file() and ".ignite" not in p.parts and "health" not in p.parts}


BASE = {"course_id": "idem-course", "subject": "addition", "grade_band": "3-5", "notes": "Use apples."}


CHANGES = [{"notes": "Use pears."}, {"notes": None}, {"study_text": "A text of my own."}, {"locale": "fr"},
           {"groups_count": 2}, {"items_per_group": 5}, {"subject": "subtraction"}]


def test_same_key_different_content_is_409_and_writes_nothing(world):
    for n, change in enumerate(CHANGES):
        key = f"order-{n}"
        first = enqueue(world, BASE, key=key)
        assert first.status_code == 202, first.text
        before, stored = snapshot(world.db_url, world.root), files_with_bytes(world)

        changed = {k: v for k, v in {**BASE, **change}.items() if v is not None}
        clash = enqueue(world, changed, key=key)
        assert clash.status_code == 409, (change, clash.text)
        error = clash.json()["error"]
        assert error["code"] == "idempotency_conflict" and next(iter(change)) in error["message"], (change, error)
        assert snapshot(world.db_url, world.root) == before and files_with_bytes(world) == stored, change

        # the same content again (spelled differently) is a replay of the first job
        same = enqueue(world, {**BASE, "grade_band": "3-5", "locale": "en", "subject": " addition"}, key=key)
        assert same.status_code == 200 and same.json()["jobId"] == first.json()["jobId"], same.text
        assert same.json()["replayed"] is True
        assert snapshot(world.db_url, world.root) == before and files_with_bytes(world) == stored


def test_racing_requests_on_one_key_cannot_swap_the_notes(world):
    """Eight requests, one key, eight different notes: one job, and its notes file is the winner's."""
    results: dict[str, httpx.Response] = {}

    def go(n: int) -> None:
        with httpx.Client(base_url=world.client.base_url, timeout=30) as c:
            notes = f"notes number {n}"
            results[notes] = c.post(ENQUEUE, json=payload(**{**BASE, "notes": notes}),
                                    headers={**agent_headers(world.org_a), "Idempotency-Key": "race-notes"})

    threads = [threading.Thread(target=go, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [notes for notes, r in results.items() if r.status_code == 202]
    assert len(winners) == 1, {n: r.status_code for n, r in results.items()}
    assert sorted(r.status_code for r in results.values()) == [202] + [409] * 7
    job_id = results[winners[0]].json()["jobId"]
    saved = json.loads(world.store.get(special_requests_path(job_id)).data)
    assert saved["notes"] == winners[0]


# -- full-match patterns --------------------------------------------------------------------------------

PATTERNED = {"course_id": "abc", "grade_band": "3-5", "grade": "4", "locale": "fr", "subject": "addition"}
# list fields whose elements are patterned
PATTERNED_ELEMENTS = {"item_images": "stimulus:all", "tags": "spring-term"}
# the original system's spellings of patterned fields (course/request.py FIELD_ALIASES), given alone
PATTERNED_ALIASES = {"courseId": "abc", "gradeBand": "3-5"}


def test_the_patterned_fields_are_the_ones_published(world):
    schema = world.client.get("/openapi.json").json()["components"]["schemas"]["EnqueuePayload"]
    published = {name for name, prop in schema["properties"].items() if "pattern" in json.dumps(prop)}
    assert published == set(PATTERNED) | set(PATTERNED_ELEMENTS) | set(PATTERNED_ALIASES)


@pytest.mark.parametrize("alias", sorted(PATTERNED_ALIASES))
def test_trailing_newline_in_an_original_spelling_is_422_and_writes_nothing(world, alias):
    fields = {"course_id": "nl-course", "subject": "addition", "grade_band": "3-5"}
    canonical = {"courseId": "course_id", "gradeBand": "grade_band"}[alias]
    alone = {k: v for k, v in fields.items() if k != canonical}
    assert enqueue(world, {**alone, alias: PATTERNED_ALIASES[alias]}).status_code == 202
    before = snapshot(world.db_url, world.root)
    for tail in ("\n", "\r\n", " \n"):
        r = enqueue(world, {**alone, alias: PATTERNED_ALIASES[alias] + tail}, key="nl-alias")
        assert r.status_code == 422, (tail, r.text)
        assert f"payload.{canonical}" in r.json()["error"]["message"], (tail, r.text)
    assert snapshot(world.db_url, world.root) == before


@pytest.mark.parametrize("field", sorted(PATTERNED_ELEMENTS))
def test_trailing_newline_in_a_patterned_list_element_is_422_and_writes_nothing(world, field):
    fields = {"course_id": "nl-course", "subject": "addition", "grade_band": "3-5"}
    assert enqueue(world, {**fields, field: [PATTERNED_ELEMENTS[field]]}).status_code == 202
    before = snapshot(world.db_url, world.root)
    for tail in ("\n", "\r\n", " \n"):
        r = enqueue(world, {**fields, field: [PATTERNED_ELEMENTS[field] + tail]}, key="nl-list")
        assert r.status_code == 422, (tail, r.text)
        assert f"payload.{field}[0]" in r.json()["error"]["message"], (tail, r.text)
    assert snapshot(world.db_url, world.root) == before


@pytest.mark.parametrize("field", sorted(PATTERNED))
def test_trailing_newline_in_a_patterned_field_is_422_and_writes_nothing(world, field):
    fields = {"course_id": "nl-course", "subject": "addition", "grade_band": "3-5"}
    assert enqueue(world, {**fields, field: PATTERNED[field]}).status_code == 202  # the value itself is fine
    before = snapshot(world.db_url, world.root)
    for tail in ("\n", "\r\n", " \n"):
        r = enqueue(world, {**fields, field: PATTERNED[field] + tail, "notes": "would be stored first"}, key="nl")
        assert r.status_code == 422, (tail, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_request" and f"payload.{field}" in error["message"], (tail, error)
    assert snapshot(world.db_url, world.root) == before


def test_trailing_newline_refused_on_the_other_routes(world):
    h = world.token("editor_a")
    before = snapshot(world.db_url, world.root)
    r = world.client.post("/functions/v1/publish-course", json={"courseId": world.course_a + "\n"}, headers=h)
    assert r.status_code == 422 and "courseId" in r.json()["error"]["message"]
    r = world.client.post("/functions/v1/ai-generate-media", json={"prompt": "an apple", "size": "512x512\n"}, headers=h)
    assert r.status_code == 422 and "size" in r.json()["error"]["message"]
    r = world.client.get("/functions/v1/list-jobs", params={"courseId": world.course_a + "\n"}, headers=h)
    assert r.status_code == 422 and "courseId" in r.json()["error"]["message"]
    assert snapshot(world.db_url, world.root) == before


def test_a_request_the_factory_cannot_serve_is_refused_at_the_door(db_url, tmp_path):
    """Without a model, Ancient Egypt for K-2 (the pack is written for 6-8) cannot be honoured: 422 naming
    the reason, nothing written — never 202 followed by a dead letter."""
    w = build_world(db_url, tmp_path / "storage")
    no_model = api_settings(openai_api_key=None, text_model=None)
    with running_api(no_model, db_url, w.store) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        w.client = c
        before = snapshot(db_url, tmp_path / "storage")
        r = enqueue(w, {"course_id": "egypt-k2", "subject": "ancient egypt", "grade_band": "K-2"})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "model_not_configured" and "written for grades 6-8, not K-2" in error["message"]
        assert snapshot(db_url, tmp_path / "storage") == before
        ok = enqueue(w, {"course_id": "egypt-6-8", "subject": "ancient egypt", "grade_band": "6-8"})
        assert ok.status_code == 202, ok.text
