"""Helpers for the media tests: a real pack course, settings pointing at the loopback image server,
media jobs enqueued through the real client, and a worker loop that runs in a spawned process."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from ignite_dagster.config import Settings
from ignite_dagster.media.attach import attach_to_course
from ignite_dagster.queue import JobQueue, NewMediaJob, TargetRef
from ignite_dagster.storage.base import ObjectStore
from tests.support.openai_server import tiny_png

IMAGE_MODEL = "gpt-image-1"
PRICES = json.dumps({IMAGE_MODEL: {"image": 0.04}})


def water_cycle_course(course_id: str, **kw: Any) -> dict[str, Any]:
    """The water-cycle pack compiled with images wanted: two study texts, one [IMAGE:] marker each."""
    from tests.support.courses import pack_course

    request = {"course_id": course_id, "subject": "water cycle", "grade_band": "3-5", "wants_images": True,
               "items_per_group": 4, **kw}
    return pack_course(request)


def attach_every_study_text(store: ObjectStore, doc: dict[str, Any], course_id: str) -> None:
    """An image stored and attached at the first marker of every study text: a course whose media is complete."""
    for text in doc["studyTexts"]:
        key = f"media-library/courses/{course_id}/study-texts/{text['id']}/img.png"
        store.put(key, tiny_png(), content_type="image/png")
        attach_to_course(store, course_id, {"type": "study_text", "sectionId": text["id"], "markerIndex": 0},
                         store.public_url(key))


def media_settings(base_url: str, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": "test-key", "openai_base_url": base_url, "image_model": IMAGE_MODEL,
        "image_size": "256x256", "llm_prices": PRICES, "image_timeout_seconds": 10.0,
        "backoff_base_seconds": 0.2, "backoff_cap_seconds": 0.5, "heartbeat_seconds": 5.0,
    }
    values.update(kw)
    return Settings(**values)


def race_targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """20 targets of every kind: each section's marker (replace) and one past it (append), item stimuli,
    and option media."""
    targets: list[dict[str, Any]] = []
    for text in doc["studyTexts"]:
        targets.append({"type": "study_text", "sectionId": text["id"], "markerIndex": 0})
        targets.append({"type": "study_text", "sectionId": text["id"], "markerIndex": 1})
    items = doc["items"]
    for item in items[:8]:
        targets.append({"type": "item_stimulus", "itemId": item["id"]})
    for item in items[8:12]:
        for k in (0, 1):
            targets.append({"type": "item_option", "itemId": item["id"], "optionIndex": k})
    assert len(targets) == 20, len(targets)
    return targets


def enqueue_targets(queue: JobQueue, org: UUID, course_id: str, targets: list[dict[str, Any]], **kw: Any) -> list[UUID]:
    ids = []
    for i, target in enumerate(targets):
        job = NewMediaJob(course_id=course_id, prompt=f"picture {i} for {target['type']}", target_ref=TargetRef(**target), **kw)
        ids.append(queue.enqueue_media(job, organization_id=org, idempotency_key=f"t:{i}").job.id)
    return ids


def local_or_s3_store(spec: dict[str, Any]) -> ObjectStore:
    """Build a store from a picklable spec (spawned processes cannot inherit one)."""
    from pathlib import Path

    from ignite_dagster.storage import LocalObjectStore, S3ObjectStore

    if spec["kind"] == "local":
        return LocalObjectStore(Path(spec["root"]), spec.get("public_base_url"))
    return S3ObjectStore(spec["endpoint"], "us-east-1", "test-access-key", "test-secret-key",
                         bucket_prefix=spec.get("bucket_prefix", ""), public_base_url=spec.get("public_base_url"))


def work_queue_in_process(db_url: str, store_spec: dict[str, Any], base_url: str, start: Any, out: Any) -> None:
    """A worker process: claim media jobs one at a time and work them until none is claimable."""
    from ignite_dagster import db
    from ignite_dagster.media.worker import MediaWorker, work_claimed
    from ignite_dagster.queue.lease import Lease

    pool = db.make_pool(db_url, max_size=3, name="media-race")
    queue = JobQueue(pool)
    settings = media_settings(base_url)
    store = local_or_s3_store(store_spec)
    lease = Lease(queue, settings.heartbeat_seconds).start()
    worker = MediaWorker(settings, queue, store, lease)
    worker.provider()  # import the SDK and build the client before the race starts
    out.put("ready")
    start.wait(60)
    import time

    t0 = time.monotonic()
    done = failed = conflicts = 0
    try:
        while True:
            jobs = queue.claim_media_jobs("race-worker", limit=1)
            if not jobs:
                break
            ok, bad = work_claimed(worker, jobs)
            done += len(ok)
            failed += len(bad)
            conflicts += sum(w.conflicts for w in ok)
    finally:
        lease.stop()
        pool.close()
    out.put({"done": done, "failed": failed, "conflicts": conflicts, "seconds": round(time.monotonic() - t0, 2)})


def regenerate_in_process(store_spec: dict[str, Any], course_id: str, start: Any, stop: Any, out: Any) -> None:
    """Course regeneration racing the media workers: write a fresh copy from the same pack, again and
    again until told to stop; reports how many URLs each write carried over (proof of interleaving)."""
    from ignite_dagster.course_jobs.persist import write_course_json
    from ignite_dagster.media.attach import attached_urls

    store = local_or_s3_store(store_spec)
    fresh = water_cycle_course(course_id)
    out.put("ready")
    start.wait(60)
    conflicts, carried = 0, []
    while not stop.is_set():
        doc, _, c = write_course_json(store, fresh)
        conflicts += c
        carried.append(len(attached_urls(doc)))
    out.put({"regenerations": len(carried), "conflicts": conflicts, "carried": sorted(set(carried))})
