"""Image providers against the real loopback OpenAI-compatible server, and their failures through the
real queue: success, 429 then success (queue backoff), policy rejection, quota, transient errors."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ignite_dagster.course_jobs.persist import write_course_json
from ignite_dagster.media.attach import key_for_url
from ignite_dagster.media.image_providers import MediaProviderError, OpenAIImageProvider, sniff_image
from ignite_dagster.media.live import generate_live_image
from ignite_dagster.media.worker import MediaJobFailed, MediaWorker
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.errors import LostClaim
from ignite_dagster.queue.lease import Lease
from ignite_dagster.storage import LocalObjectStore
from ignite_dagster.storage.keys import LIVE_MEDIA_PREFIX, course_path
from tests.support.jobs import set_columns
from tests.support.media import IMAGE_MODEL, enqueue_targets, media_settings, water_cycle_course
from tests.support.openai_server import (
    IMAGES,
    OpenAICompatServer,
    Reply,
    api_error,
    image_png,
    quota_exceeded,
    rate_limited,
    server_error,
    tiny_png,
)

COURSE = "wc-media"


@pytest.fixture
def server():
    with OpenAICompatServer() as s:
        yield s


@pytest.fixture
def world(server, db_url, org_id, tmp_path):
    """Queue, store with the course written, a worker with a running lease."""
    settings = media_settings(server.base_url)
    queue = JobQueue(db_url)
    store = LocalObjectStore(tmp_path / "storage")
    course = water_cycle_course(COURSE)
    write_course_json(store, course)
    lease = Lease(queue, settings.heartbeat_seconds).start()
    worker = MediaWorker(settings, queue, store, lease)
    yield {"db_url": db_url, "settings": settings, "queue": queue, "store": store, "course": course, "worker": worker, "org": org_id}
    lease.stop()


def stimulus_job(world, index: int = 0):
    target = {"type": "item_stimulus", "itemId": world["course"]["items"][index]["id"]}
    return enqueue_targets(world["queue"], world["org"], COURSE, [target])[0]


def claim(queue: JobQueue, timeout: float = 5.0):
    """Claim the next job, polling while it backs off (real state, no fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = queue.claim_media_jobs("test-worker", limit=1)
        if jobs:
            return jobs[0]
        time.sleep(0.02)
    raise AssertionError("no media job became claimable")


# --- the provider on its own ---------------------------------------------------------------------------


def test_provider_returns_decoded_png_with_cost_and_sends_settings(server):
    provider = OpenAIImageProvider.from_settings(media_settings(server.base_url))
    image = provider.generate("a rain cloud", style="watercolor")
    assert image.data == tiny_png() and image.content_type == "image/png" and image.ext == "png"
    assert image.cost_usd == Decimal("0.04") and image.model == IMAGE_MODEL and image.size == "256x256"
    body = server.requests_to(IMAGES)[0].json
    assert body["model"] == IMAGE_MODEL and body["size"] == "256x256" and body["n"] == 1
    assert body["prompt"] == "a rain cloud\n\nStyle: watercolor" and "response_format" not in body
    assert server.requests_to(IMAGES)[0].headers["authorization"] == "Bearer test-key"


def test_dall_e_asks_for_base64_and_unpriced_model_has_unknown_cost(server):
    provider = OpenAIImageProvider.from_settings(media_settings(server.base_url, image_model="dall-e-3"))
    image = provider.generate("a river")
    assert server.requests_to(IMAGES)[0].json["response_format"] == "b64_json"
    assert image.cost_usd is None


@pytest.mark.parametrize("reply, reason", [
    (server_error(503), "provider_unavailable"),
    (server_error(500), "provider_unavailable"),
    (Reply(drop=True), "provider_unavailable"),
    (rate_limited(retry_after=7), "provider_rate_limited"),
    (quota_exceeded(), "provider_quota"),
    (api_error(400, "Your request was rejected as a result of our safety system.", code="content_policy_violation",
               type_="invalid_request_error"), "content_refused"),
    (api_error(400, "Invalid size '7x7'.", code="invalid_value", type_="invalid_request_error"), "invalid_request"),
    (api_error(401, "Incorrect API key provided.", code="invalid_api_key", type_="invalid_request_error"), "provider_auth"),
    (Reply(body={"created": 1, "data": [{"url": "https://x/y.png"}]}), "provider_error"),
    (Reply(body={"created": 1, "data": [{"b64_json": base64.b64encode(b"GIF89a....").decode()}]}), "provider_error"),
])
def test_provider_failures_are_classified(server, reply, reason):
    server.enqueue(IMAGES, reply)
    provider = OpenAIImageProvider.from_settings(media_settings(server.base_url))
    with pytest.raises(MediaProviderError) as err:
        provider.generate("a river")
    assert err.value.reason_code == reason
    assert err.value.retryable == (reason in ("provider_unavailable", "provider_rate_limited"))
    assert len(server.requests_to(IMAGES)) == 1  # the SDK never retries (max_retries=0)
    if reason == "provider_rate_limited":
        assert err.value.retry_after == 7


def test_timeout_is_retryable(server):
    server.enqueue(IMAGES, Reply(body=image_png().body, delay=1.5))
    provider = OpenAIImageProvider.from_settings(media_settings(server.base_url, image_timeout_seconds=0.3))
    with pytest.raises(MediaProviderError) as err:
        provider.generate("slow")
    assert err.value.reason_code == "provider_unavailable" and err.value.retryable


def test_unconfigured_images_fail_loudly_naming_the_variables():
    from ignite_dagster.config import Settings

    with pytest.raises(MediaProviderError) as err:
        OpenAIImageProvider.from_settings(Settings(openai_api_key=None, image_model=None))
    assert err.value.reason_code == "model_not_configured"
    assert "OPENAI_API_KEY" in err.value.message and "IGNITE_IMAGE_MODEL" in err.value.message


def test_sniffing():
    assert sniff_image(tiny_png()) == ("image/png", "png")
    assert sniff_image(b"\xff\xd8\xff\xe0" + b"\x00" * 20) == ("image/jpeg", "jpg")
    assert sniff_image(b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8) == ("image/webp", "webp")
    with pytest.raises(MediaProviderError):
        sniff_image(b"<svg></svg>")


# --- through the queue ---------------------------------------------------------------------------------


def test_success_through_the_queue(world, server):
    queue, store = world["queue"], world["store"]
    job_id = stimulus_job(world)
    work = world["worker"].process(claim(queue))
    job = queue.get(job_id, "ai_media_jobs")
    assert job.status == "done" and job.result_url == work.url and job.cost_usd == Decimal("0.0400")
    assert job.result_path == f"media-library/courses/{COURSE}/items/{world['course']['items'][0]['id']}/{job_id}.png"
    assert job.model == IMAGE_MODEL and job.provider == "openai" and job.metadata["bytes"] == len(tiny_png())
    obj = store.get(key_for_url(store, job.result_url))
    assert obj.data == tiny_png() and obj.content_type == "image/png"
    doc = json.loads(store.get(course_path(COURSE)).data)
    assert doc["items"][0]["stimulus"]["url"] == job.result_url
    steps = [(e.step, e.status) for e in queue.events(job_id)]
    assert steps == [("claimed", "info"), ("generate", "success"), ("store", "success"), ("attach", "success")]


def test_rate_limited_then_success_through_queue_backoff(world, server):
    queue = world["queue"]
    server.enqueue(IMAGES, rate_limited())
    job_id = stimulus_job(world)
    first = claim(queue)
    failed_at = datetime.now(UTC)
    with pytest.raises(MediaJobFailed) as err:
        world["worker"].process(first)
    assert err.value.reason_code == "provider_rate_limited" and err.value.new_status == "failed"
    row = queue.get(job_id, "ai_media_jobs")
    assert row.status == "failed" and row.reason_code == "provider_rate_limited"
    assert row.next_attempt_at > failed_at  # backoff from the queue, not a sleep in the worker
    second = claim(queue)
    assert second.id == job_id and second.attempt == 2 and second.retry_count == 1
    world["worker"].process(second)
    done = queue.get(job_id, "ai_media_jobs")
    assert done.status == "done" and done.attempt == 2 and len(server.requests_to(IMAGES)) == 2


def test_policy_rejection_dead_letters_with_reason(world, server):
    queue = world["queue"]
    server.enqueue(IMAGES, api_error(400, "Your request was rejected as a result of our safety system.",
                                     code="content_policy_violation", type_="invalid_request_error"))
    job_id = stimulus_job(world)
    with pytest.raises(MediaJobFailed):
        world["worker"].process(claim(queue))
    row = queue.get(job_id, "ai_media_jobs")
    assert (row.status, row.reason_code) == ("dead_letter", "content_refused") and "safety system" in row.error
    assert queue.claim_media_jobs("w") == []


def test_quota_fails_fast_with_exactly_one_request(world, server):
    queue = world["queue"]
    server.respond_with(IMAGES, quota_exceeded())
    job_id = stimulus_job(world)
    with pytest.raises(MediaJobFailed):
        world["worker"].process(claim(queue))
    row = queue.get(job_id, "ai_media_jobs")
    assert (row.status, row.reason_code, row.retry_count) == ("dead_letter", "provider_quota", 0)
    assert len(server.requests_to(IMAGES)) == 1


def test_course_not_generated_yet_is_retryable_and_the_retry_reuses_the_stored_image(world, server):
    queue, store = world["queue"], world["store"]
    store.delete(course_path(COURSE))
    job_id = stimulus_job(world)
    with pytest.raises(MediaJobFailed) as err:
        world["worker"].process(claim(queue))
    assert err.value.reason_code == "course_not_ready" and err.value.new_status == "failed"
    write_course_json(store, world["course"])  # the course arrives
    work = world["worker"].process(claim(queue))
    assert work.reused and len(server.requests_to(IMAGES)) == 1  # paid once
    row = queue.get(job_id, "ai_media_jobs")
    assert row.status == "done" and row.cost_usd == Decimal("0") and row.metadata["reused"] is True
    assert len(store.list(f"media-library/courses/{COURSE}/items/")) == 1


def test_lost_claim_stops_before_writing(world, server):
    queue, store = world["queue"], world["store"]
    job_id = stimulus_job(world)
    job = claim(queue)
    set_columns(world["db_url"], "ai_media_jobs", job_id, attempt=job.attempt + 1)  # someone else holds it now
    with pytest.raises(LostClaim):
        world["worker"].process(job)
    assert store.list("media-library/") == [] and len(server.requests_to(IMAGES)) == 0


# --- live path -----------------------------------------------------------------------------------------


def test_live_image_is_stored_under_tmp_and_returned(server, tmp_path):
    store = LocalObjectStore(tmp_path, "https://media.example/public")
    out = generate_live_image(media_settings(server.base_url), store, "an apple", style="flat", size="512x512")
    assert out["path"].startswith(LIVE_MEDIA_PREFIX + "/") and out["path"].endswith(".png")
    assert out["url"] == f"https://media.example/public/{out['path']}"
    assert out["contentType"] == "image/png" and out["bytes"] == len(tiny_png()) and out["model"] == IMAGE_MODEL
    assert store.get(out["path"]).data == tiny_png()
    assert server.requests_to(IMAGES)[0].json["size"] == "512x512"


def test_live_image_failure_keeps_the_reason_and_stores_nothing(server, tmp_path):
    store = LocalObjectStore(tmp_path)
    server.enqueue(IMAGES, quota_exceeded())
    with pytest.raises(MediaProviderError) as err:
        generate_live_image(media_settings(server.base_url), store, "an apple")
    assert err.value.reason_code == "provider_quota"
    assert store.list("media-library/") == []


def test_upstream_retry_after_delays_the_queue_retry(server, world):
    queue = world["queue"]
    server.enqueue(IMAGES, rate_limited(retry_after=90))
    job_id = stimulus_job(world)
    failed_at = datetime.now(UTC)
    with pytest.raises(MediaJobFailed):
        world["worker"].process(claim(queue))
    row = queue.get(job_id, "ai_media_jobs")
    assert row.status == "failed" and (row.next_attempt_at - failed_at).total_seconds() >= 89
    assert queue.claim_media_jobs("test-worker", limit=1) == []  # not before the provider said


def test_reconcile_finishes_a_media_job_whose_worker_died_after_attaching(world, server):
    from ignite_dagster.media.attach import attach_to_course
    from ignite_dagster.media.reconcile import reconcile_media
    from tests.support.jobs import set_columns

    queue, worker = world["queue"], world["worker"]
    items = world["course"]["items"]
    job_id, other_id = enqueue_targets(queue, world["org"], COURSE,
                                       [{"type": "item_stimulus", "itemId": items[i]["id"]} for i in (0, 1)])
    work = worker.store_image(worker.generate(worker.begin(claim(queue))))
    attach_to_course(world["store"], COURSE, work.job.target_ref, work.url)  # ... and the process died here
    stored_only = worker.store_image(worker.generate(worker.begin(claim(queue))))  # died before attaching
    for jid in (job_id, other_id):
        set_columns(world["db_url"], "ai_media_jobs", jid, last_heartbeat=datetime.now(UTC) - timedelta(minutes=5))
    report = reconcile_media(queue, world["store"], quiet_for=timedelta(seconds=60))
    assert [j.job_id for j in report.marked_done] == [job_id] and report.checked == 2
    done = queue.get(job_id, "ai_media_jobs")
    assert (done.status, done.result_url, done.result_path) == ("done", work.url, work.key)
    assert queue.get(other_id, "ai_media_jobs").status == "processing"  # the retry will attach it
    assert stored_only.job.id == other_id
