"""End to end through the real Dagster daemon: a course requested with images → course run → media jobs →
media sensor → media run → images from the loopback server in storage, attached into course.json, the
course_media partition materialized and its media_complete check passed."""

from __future__ import annotations

import json
import os

import psycopg
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance
from dagster._core.event_api import PartitionKeyFilter

from ignite_dagster.media.attach import key_for_url
from ignite_dagster.media.markers import IMAGE_MARKER, is_attached
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage import LocalObjectStore
from tests.support.jobs import new_course
from tests.support.media import IMAGE_MODEL, PRICES
from tests.support.openai_server import IMAGES, OpenAICompatServer, tiny_png
from tests.support.stack import start_stack, wait_until

pytestmark = pytest.mark.e2e
COURSE = "water-cycle-e2e"


@pytest.fixture
def image_server():
    with OpenAICompatServer() as server:
        yield server


@pytest.fixture
def stack(db_url, tmp_path, image_server):
    s = start_stack(db_url, tmp_path, extra_env={
        "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": image_server.base_url, "IGNITE_IMAGE_MODEL": IMAGE_MODEL,
        "IGNITE_IMAGE_SIZE": "256x256", "IGNITE_LLM_PRICES": PRICES,
    })
    yield s
    s.stop()


def test_course_with_images_ends_with_every_marker_attached_and_media_materialized(stack, db_url, org_id, tmp_path,
                                                                                  image_server):
    queue = JobQueue(db_url)
    course_job = queue.enqueue_course(new_course(COURSE, subject="water cycle", grade_band="3-5", wants_images=True),
                                      organization_id=org_id).job

    def media_done():
        job = queue.get(course_job.id)
        assert job.status not in ("failed", "dead_letter"), job.error
        media = queue.list("ai_media_jobs", course_id=COURSE)
        bad = [m for m in media if m.status in ("failed", "dead_letter")]
        assert not bad, [(m.status, m.reason_code, m.error) for m in bad]
        return job.status == "done" and len(media) == 2 and all(m.status == "done" for m in media) and media

    media = wait_until(media_done, 120, "course and its two media jobs done", stack=stack)

    store = LocalObjectStore(tmp_path / "storage")
    doc = json.loads((tmp_path / "storage" / "courses" / COURSE / "course.json").read_text())
    markers = [v for t in doc["studyTexts"] for v in IMAGE_MARKER.findall(t["content"])]
    assert len(markers) == 2 and all(is_attached(v) for v in markers)
    assert sorted(markers) == sorted(m.result_url for m in media)
    for url in markers:
        key = key_for_url(store, url)
        assert key is not None and key.startswith(f"media-library/courses/{COURSE}/study-texts/")
        assert store.get(key).data == tiny_png() and store.get(key).content_type == "image/png"
    assert len(image_server.requests_to(IMAGES)) == 2
    assert all(m.model == IMAGE_MODEL and str(m.cost_usd) == "0.0400" for m in media)

    os.environ["DATABASE_URL"] = stack.env["DATABASE_URL"]
    instance = DagsterInstance.from_config(stack.env["DAGSTER_HOME"])
    try:
        def materialized():
            return COURSE in instance.get_materialized_partitions(AssetKey("course_media"))

        wait_until(materialized, 30, "course_media partition materialized", stack=stack)
        record = instance.get_latest_materialization_event(AssetKey("course_media"))
        md = record.asset_materialization.metadata
        assert record.asset_materialization.partition == COURSE
        assert md["count"].value + md["reused"].value >= 1 and {"bytes", "provider", "model", "cost_usd", "targets"} <= set(md)
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("course_media"), "media_complete"), limit=10,
            partition_filter=PartitionKeyFilter(key=COURSE))
        assert history and history[0].event.dagster_event.event_specific_data.passed
    finally:
        instance.dispose()
    with psycopg.connect(db_url) as conn:
        steps = conn.execute("SELECT step FROM job_events WHERE job_table = 'ai_media_jobs' AND job_id = %s ORDER BY seq",
                             (media[0].id,)).fetchall()
    assert [s[0] for s in steps] == ["claimed", "generate", "store", "attach"]


# -- item and option images on request, through the API and the daemon ----------------------------------------

ITEMS_COURSE = "water-cycle-items-e2e"


@pytest.fixture
def images_only_stack(db_url, tmp_path, image_server):
    """The daemon with an image provider of its own (IGNITE_IMAGE_*) and no text provider at all."""
    s = start_stack(db_url, tmp_path, extra_env={
        "IGNITE_IMAGE_BASE_URL": image_server.base_url, "IGNITE_IMAGE_API_KEY": "image-key",
        "IGNITE_IMAGE_MODEL": IMAGE_MODEL, "IGNITE_IMAGE_SIZE": "256x256", "IGNITE_LLM_PRICES": PRICES,
    })
    yield s
    s.stop()


def test_item_and_option_images_requested_through_the_api_end_attached_and_a_second_request_adds_only_its_own(
        images_only_stack, db_url, org_id, tmp_path, image_server):
    import httpx

    from tests.support.api_server import agent_headers, api_settings, running_api

    stack = images_only_stack
    store = LocalObjectStore(tmp_path / "storage")
    queue = JobQueue(db_url)

    def all_media_done(expected: int):
        def check():
            media = queue.list("ai_media_jobs", course_id=ITEMS_COURSE, limit=100)
            bad = [m for m in media if m.status in ("failed", "dead_letter")]
            assert not bad, [(m.status, m.reason_code, m.error) for m in bad]
            return len(media) == expected and all(m.status == "done" for m in media) and media
        return check

    def course_doc() -> dict:
        return json.loads(store.get(f"courses/{ITEMS_COURSE}/course.json").data)

    def resolves(url: str) -> bool:
        key = key_for_url(store, url)
        return key is not None and store.get(key).data == tiny_png()

    payload = {"course_id": ITEMS_COURSE, "subject": "water cycle", "grade_band": "3-5", "items_per_group": 2,
               "groups_count": 2, "wants_images": True, "item_images": ["stimulus:all", "options:1"]}
    settings = api_settings(openai_api_key=None, text_model=None, image_api_key="image-key", image_model=IMAGE_MODEL,
                            image_base_url=image_server.base_url)
    with running_api(settings, db_url, store) as api, httpx.Client(base_url=api.url, timeout=30) as client:
        r = client.post("/functions/v1/enqueue-job", json={"jobType": "ai_course_generate", "payload": payload},
                        headers=agent_headers(org_id))
        assert r.status_code == 202, r.text
        # 2 study-text markers + a stimulus for each of the 4 items + item 1's 4 options
        first = wait_until(all_media_done(10), 240, "the course and its 10 media jobs done", stack=stack)
        doc = course_doc()
        assert all(resolves(i["stimulus"]["url"]) and i["stimulus"]["alt"] for i in doc["items"])
        options_1 = doc["items"][1]["optionMedia"]
        assert len(options_1) == 4 and all(resolves(m["url"]) for m in options_1)
        assert all(is_attached(v) and resolves(v) for t in doc["studyTexts"] for v in IMAGE_MARKER.findall(t["content"]))

        r = client.post("/functions/v1/request-course-media", headers=agent_headers(org_id),
                        json={"courseId": ITEMS_COURSE, "targets": ["stimulus:all", "options:2"]})
        assert r.status_code == 202, r.text
        assert len(r.json()["jobIds"]) == 4 and len(r.json()["alreadyAttached"]) == 4
        wait_until(all_media_done(14), 240, "the 4 new option images done", stack=stack)
    after = course_doc()
    assert [i["stimulus"] for i in after["items"]] == [i["stimulus"] for i in doc["items"]]  # untouched
    assert after["items"][1]["optionMedia"] == options_1 and after["studyTexts"] == doc["studyTexts"]
    assert all(resolves(m["url"]) for m in after["items"][2]["optionMedia"])
    assert len(image_server.requests_to(IMAGES)) == 14 and len(first) == 10
    assert {r.headers["authorization"] for r in image_server.requests} == {"Bearer image-key"}

    os.environ["DATABASE_URL"] = stack.env["DATABASE_URL"]
    instance = DagsterInstance.from_config(stack.env["DAGSTER_HOME"])
    try:
        def latest_check_passed():
            history = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey("course_media"), "media_complete"), limit=1,
                partition_filter=PartitionKeyFilter(key=ITEMS_COURSE))
            return history and history[0].event.dagster_event.event_specific_data.passed

        wait_until(latest_check_passed, 30, "media_complete passed for the partition", stack=stack)
    finally:
        instance.dispose()
