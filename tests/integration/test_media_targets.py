"""Item and option images on request: alt text stored, the requested targets in the completeness check,
and images for an existing course over HTTP and the CLI (404 across organizations, nothing written on
refusal, attached images left untouched). Real Postgres, real HTTP (uvicorn and the loopback image
server), the production media worker; the target vocabulary and prompts are tests/unit/test_media_targets.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import psycopg
import pytest

from ignite_dagster.media.attach import key_for_url, media_completeness
from ignite_dagster.media.prompts import question_text
from ignite_dagster.media.worker import MediaWorker, work_claimed
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.lease import Lease
from ignite_dagster.storage.keys import course_path
from tests.support.api_server import (
    agent_headers,
    api_settings,
    build_world,
    running_api,
    seed_course,
    snapshot,
)
from tests.support.media import media_settings, water_cycle_course
from tests.support.openai_server import IMAGES, OpenAICompatServer, tiny_png

ROUTE = "/functions/v1/request-course-media"
COURSE = "wc-targets"


# -- attaching: alt text, completeness ---------------------------------------------------------------------


@pytest.fixture
def image_server():
    with OpenAICompatServer() as server:
        yield server


def run_media_jobs(db_url: str, store, base_url: str) -> list:
    queue = JobQueue(db_url)
    worker = MediaWorker(media_settings(base_url), queue, store, Lease(queue, 5.0))
    try:
        done, failed = work_claimed(worker, queue.claim_media_jobs("targets-test", limit=100))
    finally:
        worker.close()
    assert not failed, failed
    return done


def test_item_images_attach_with_alt_text_and_count_in_the_completeness_check(db_url, tmp_path, image_server):
    from ignite_dagster.media.targets import request_course_images

    world = build_world(db_url, tmp_path / "storage")
    seed_course(db_url, world.store, COURSE, world.org_a, water_cycle_course(COURSE))
    with psycopg.connect(db_url, autocommit=True) as conn:
        result = request_course_images(conn, world.store, organization_id=world.org_a, course_id=COURSE,
                                       specs=["stimulus:2", "options:3"])
    requested = result.targets
    assert len(result.job_ids) == len(requested) == 5
    pending = media_completeness(world.store, COURSE, requested)
    assert not pending.passed and len(pending.missing_targets) == 5  # requested, not attached yet

    done = run_media_jobs(db_url, world.store, image_server.base_url)
    assert len(done) == 5 and len(image_server.requests_to(IMAGES)) == 5
    doc = json.loads(world.store.get(course_path(COURSE)).data)
    item2, item3 = doc["items"][2], doc["items"][3]
    assert item2["stimulus"]["alt"] == question_text(item2) and item2["stimulus"]["type"] == "image"
    assert [m["alt"] for m in item3["optionMedia"]] == item3["options"]
    for url in [item2["stimulus"]["url"], *(m["url"] for m in item3["optionMedia"])]:
        key = key_for_url(world.store, url)
        assert key and key.startswith(f"media-library/courses/{COURSE}/items/") and world.store.get(key).data == tiny_png()
    report = media_completeness(world.store, COURSE, requested)
    assert report.requested == report.requested_attached == 5 and not report.missing_targets and not report.unresolved
    assert len(report.pending_markers) == 2  # the study-text markers: not requested here, still descriptions


# -- images for an existing course: the route --------------------------------------------------------------


@pytest.fixture
def api(db_url, tmp_path, image_server):
    world = build_world(db_url, tmp_path / "storage")
    seed_course(db_url, world.store, COURSE, world.org_a, water_cycle_course(COURSE))
    settings = api_settings(image_model="gpt-image-1", image_base_url=image_server.base_url)
    with running_api(settings, db_url, world.store) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        world.client = c
        yield world


def media_rows(db_url: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT target_ref, status, requested_by FROM ai_media_jobs ORDER BY created_at, id").fetchall()


def test_images_for_an_existing_course_add_only_what_is_missing(api, image_server):
    h = api.token("editor_a")
    r = api.client.post(ROUTE, json={"courseId": COURSE, "targets": ["stimulus:0", "options:1"]}, headers=h)
    assert r.status_code == 202, r.text
    first = r.json()
    assert len(first["jobIds"]) == 5 and first["alreadyAttached"] == [] and first["alreadyQueued"] == []
    again = api.client.post(ROUTE, json={"courseId": COURSE, "targets": ["stimulus:0"]}, headers=h).json()
    assert again["jobIds"] == [] and again["alreadyQueued"] == [{"type": "item_stimulus", "itemId": 0}]

    run_media_jobs(api.db_url, api.store, image_server.base_url)
    before = json.loads(api.store.get(course_path(COURSE)).data)
    r = api.client.post(ROUTE, json={"courseId": COURSE, "targets": ["stimulus:0", "stimulus:1", "study_texts"]},
                        headers=h)
    assert r.status_code == 202, r.text
    second = r.json()
    assert second["alreadyAttached"] == [{"type": "item_stimulus", "itemId": 0}]
    assert [t["type"] for t in second["targets"]] == ["item_stimulus", "study_text", "study_text"]
    run_media_jobs(api.db_url, api.store, image_server.base_url)
    after = json.loads(api.store.get(course_path(COURSE)).data)
    # what was attached before is untouched; the new targets carry images now
    assert after["items"][0]["stimulus"] == before["items"][0]["stimulus"]
    assert after["items"][1]["optionMedia"] == before["items"][1]["optionMedia"]
    assert after["items"][1]["stimulus"]["url"] and all("[IMAGE:http" in t["content"] or "[IMAGE:file" in t["content"]
                                                         for t in after["studyTexts"])
    assert len(image_server.requests_to(IMAGES)) == 5 + 3


def test_another_organizations_course_is_404_and_nothing_is_written(api):
    before = snapshot(api.db_url, api.root)
    for headers in (api.token("editor_b"), agent_headers(api.org_b)):
        r = api.client.post(ROUTE, json={"courseId": COURSE, "targets": ["stimulus:all"]}, headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    with psycopg.connect(api.db_url, autocommit=True) as conn:  # public in the catalog: still not theirs
        conn.execute("UPDATE course_metadata SET visibility = 'public' WHERE id = %s", (COURSE,))
    assert api.client.post(ROUTE, json={"courseId": COURSE, "targets": ["stimulus:0"]},
                           headers=api.token("editor_b")).status_code == 404
    missing = api.client.post(ROUTE, json={"courseId": "no-such-course", "targets": ["stimulus:0"]},
                              headers=api.token("editor_a"))
    assert missing.status_code == 404
    viewer = api.client.post(ROUTE, json={"courseId": COURSE, "targets": ["stimulus:0"]}, headers=api.token("viewer_a"))
    assert viewer.status_code == 403
    assert media_rows(api.db_url) == [] and snapshot(api.db_url, api.root)["files"] == before["files"]


@pytest.mark.parametrize("targets, field", [
    (["stimulus:999"], "stimulus:999"), (["picture:1"], "targets"), ([], "targets"), (["stimulus:0\n"], "targets"),
])
def test_a_target_the_course_lacks_is_422_and_nothing_is_written(api, targets, field):
    r = api.client.post(ROUTE, json={"courseId": COURSE, "targets": targets}, headers=api.token("editor_a"))
    assert r.status_code == 422 and field in r.json()["error"]["message"], r.text
    assert media_rows(api.db_url) == []


def test_images_are_refused_up_front_when_no_image_model_is_configured(db_url, tmp_path):
    world = build_world(db_url, tmp_path / "storage")
    seed_course(db_url, world.store, COURSE, world.org_a, water_cycle_course(COURSE))
    before = snapshot(db_url, world.root)
    with running_api(api_settings(), db_url, world.store) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        for fields in ({"wants_images": True}, {"item_images": ["stimulus:all"]}):
            payload = {"course_id": "no-images", "subject": "water cycle", "grade_band": "3-5", **fields}
            r = c.post("/functions/v1/enqueue-job", json={"jobType": "ai_course_generate", "payload": payload},
                       headers=agent_headers(world.org_a))
            assert r.status_code == 422 and r.json()["error"]["code"] == "model_not_configured", r.text
            assert "IGNITE_IMAGE_MODEL" in r.json()["error"]["message"]
        r = c.post(ROUTE, json={"courseId": COURSE, "targets": ["stimulus:0"]}, headers=world.token("editor_a"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "model_not_configured", r.text
    assert snapshot(db_url, world.root) == before


def test_the_cli_requests_images_for_a_course_of_its_organization(api, tmp_path):
    env = dict(os.environ, DATABASE_URL=api.db_url, IGNITE_HOME=str(tmp_path / "home"),
               IGNITE_STORAGE_ROOT=str(api.root), OPENAI_API_KEY="test-key", IGNITE_IMAGE_MODEL="gpt-image-1")

    def ignite(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ignite_dagster.cli.main", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    out = ignite("courses", "images", COURSE, "--org", str(api.org_a), "--target", "stimulus:4", "--target",
                 "options:4", "--requested-by", "cli-test")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["jobIds"]) == 5 and result["targets"][0] == {"type": "item_stimulus", "itemId": 4}
    assert {row[2] for row in media_rows(api.db_url)} == {"cli-test"}
    other = ignite("courses", "images", COURSE, "--org", str(api.org_b), "--target", "stimulus:0")
    assert other.returncode == 2 and "not found" in other.stderr
    bad = ignite("courses", "images", COURSE, "--org", str(api.org_a), "--target", "stimulus:999")
    assert bad.returncode == 2 and "stimulus:999" in bad.stderr
    assert len(media_rows(api.db_url)) == 5


def test_racing_requests_for_the_same_targets_make_one_job_per_target(api):
    """Eight callers at once, same targets: each target gets exactly one job (the live-key index decides)."""
    import threading

    barrier, answers = threading.Barrier(8), []

    def ask() -> None:
        with httpx.Client(base_url=api.client.base_url, timeout=30) as c:
            barrier.wait(10)
            answers.append(c.post(ROUTE, json={"courseId": COURSE, "targets": ["stimulus:all"]},
                                  headers=agent_headers(api.org_a)))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in answers] == [202] * 8, [r.text for r in answers]
    items = len(water_cycle_course(COURSE)["items"])
    job_ids = [j for r in answers for j in r.json()["jobIds"]]
    assert len(job_ids) == len(set(job_ids)) == items
    rows = media_rows(api.db_url)
    assert len(rows) == items and len({json.dumps(r[0], sort_keys=True) for r in rows}) == items
    for r in answers:  # every answer accounts for every target: created here, or queued by another caller
        body = r.json()
        assert len(body["targets"]) + len(body["alreadyQueued"]) == items
