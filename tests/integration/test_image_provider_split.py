"""Text and images from different providers: the image settings (IGNITE_IMAGE_BASE_URL,
IGNITE_IMAGE_API_KEY) fall back to the text provider's only when unset, and with both set each loopback
server receives only its own calls — for media jobs and the live ai-generate-media route alike.
Real Postgres, real HTTP servers, the production course and media workers; the settings on their own are
tests/unit/test_image_provider_split.py."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from ignite_dagster.config import Settings
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course_jobs.submit import submit_course_request
from ignite_dagster.course_jobs.worker import CourseWorker
from ignite_dagster.media.worker import MediaWorker, work_claimed
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.lease import Lease
from ignite_dagster.storage.keys import course_path
from tests.support.api_server import agent_headers, api_settings, build_world, running_api
from tests.support.media import IMAGE_MODEL
from tests.support.openai_server import CHAT, IMAGES, OpenAICompatServer, ScriptedCourseModel

TEXT_KEY, IMAGE_KEY = "text-key-0001", "image-key-0002"


# -- two servers -----------------------------------------------------------------------------------------


@pytest.fixture
def servers():
    with OpenAICompatServer() as text, OpenAICompatServer() as images:
        text.respond_with(CHAT, ScriptedCourseModel())
        yield text, images


def split_settings(text: OpenAICompatServer, images: OpenAICompatServer, **kw) -> Settings:
    return Settings(openai_api_key=TEXT_KEY, openai_base_url=text.base_url, text_model="text-model",
                    image_api_key=IMAGE_KEY, image_base_url=images.base_url, image_model=IMAGE_MODEL,
                    image_size="256x256", **kw)


def only_calls(server: OpenAICompatServer, route: str, key: str) -> int:
    """How many calls ``server`` received, after checking every one went to ``route`` with ``key``."""
    assert server.requests, "the server received nothing"
    assert {r.path for r in server.requests if r.path != "/props"} == {route}, [r.path for r in server.requests]
    assert {r.headers.get("authorization") for r in server.requests if r.path == route} == {f"Bearer {key}"}
    return len([r for r in server.requests if r.path == route])


def test_course_text_and_its_images_each_go_to_their_own_server(db_url, tmp_path, servers):
    text, images = servers
    world = build_world(db_url, tmp_path / "storage")
    settings = split_settings(text, images)
    queue = JobQueue(db_url)
    request = CourseRequest(course_id="split-volcanoes", subject="volcanoes", grade_band="3-5", items_per_group=2,
                            groups_count=2, strategy="llm", wants_images=True, item_images=["stimulus:all", "options:1"])
    job = submit_course_request(queue, world.store, request, organization_id=world.org_a, model_configured=True).job
    (claimed,) = [j for j in queue.claim_course_jobs("split-test", limit=5) if j.id == job.id]
    CourseWorker(settings, queue, world.store, Lease(queue, 5.0)).process(claimed)
    assert queue.get(job.id).status == "done"

    media = queue.claim_media_jobs("split-test", limit=50)
    worker = MediaWorker(settings, queue, world.store, Lease(queue, 5.0))
    try:
        done, failed = work_claimed(worker, media)
    finally:
        worker.close()
    assert not failed and len(done) == len(media)
    doc = json.loads(world.store.get(course_path(request.course_id)).data)
    markers = sum(t["content"].count("[IMAGE:") for t in doc.get("studyTexts") or [])
    assert len(media) == markers + len(doc["items"]) + 4  # study texts, a stimulus per item, item 1's 4 options

    assert only_calls(text, CHAT, TEXT_KEY) >= 1
    assert only_calls(images, IMAGES, IMAGE_KEY) == len(media)
    assert {r.json["model"] for r in images.requests} == {IMAGE_MODEL}


def test_the_live_route_uses_the_image_provider(db_url, tmp_path, servers):
    text, images = servers
    world = build_world(db_url, tmp_path / "storage")
    settings = api_settings(openai_api_key=TEXT_KEY, openai_base_url=text.base_url, image_api_key=IMAGE_KEY,
                            image_base_url=images.base_url, image_model=IMAGE_MODEL)
    with running_api(settings, db_url, world.store) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/functions/v1/ai-generate-media", json={"prompt": "a red apple"}, headers=agent_headers(world.org_a))
    assert r.status_code == 200, r.text
    assert only_calls(images, IMAGES, IMAGE_KEY) == 1
    assert text.requests == []


def test_the_live_route_refuses_without_an_image_model_naming_the_settings(db_url, tmp_path):
    world = build_world(db_url, tmp_path / "storage")
    settings = api_settings(image_api_key=IMAGE_KEY)  # a key, but no IGNITE_IMAGE_MODEL
    with running_api(settings, db_url, world.store) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/functions/v1/ai-generate-media", json={"prompt": "a red apple"}, headers=agent_headers(world.org_a))
    assert r.status_code == 503 and "IGNITE_IMAGE_MODEL" in r.json()["error"]["message"], r.text
    assert uuid.UUID(r.json()["requestId"])
