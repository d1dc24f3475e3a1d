"""Lost-update test: 20 media jobs for one course worked concurrently by several OS processes while a
course regeneration rewrites course.json from the same pack, on the local backend and on S3 (moto).

Real parts throughout: jobs claimed from Postgres, images from the loopback server, course.json written by
compare-and-swap on the real store. The end state must hold every job's URL at its target exactly once,
no marker left holding a description, and every URL resolving to a stored object.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp

import pytest

from ignite_dagster.course_jobs.persist import write_course_json
from ignite_dagster.media.attach import media_completeness, target_url
from ignite_dagster.media.markers import IMAGE_MARKER, is_attached
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage import S3ObjectStore
from ignite_dagster.storage.keys import course_path
from tests.support.media import (
    enqueue_targets,
    local_or_s3_store,
    race_targets,
    regenerate_in_process,
    water_cycle_course,
    work_queue_in_process,
)
from tests.support.moto_s3 import SerializedMotoServer
from tests.support.openai_server import OpenAICompatServer

COURSE = "wc-race"
WORKERS = 3


@pytest.fixture(scope="module")
def moto_endpoint():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = SerializedMotoServer()
    server.start()
    S3ObjectStore(server.endpoint, "us-east-1", "test-access-key", "test-secret-key", bucket_prefix="race-").ensure_buckets()
    yield server.endpoint
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store_spec(request, tmp_path):
    if request.param == "local":
        return {"kind": "local", "root": str(tmp_path / "storage")}
    return {"kind": "s3", "endpoint": request.getfixturevalue("moto_endpoint"), "bucket_prefix": "race-"}


def test_concurrent_attachments_and_regeneration_lose_nothing(store_spec, db_url, org_id):
    store = local_or_s3_store(store_spec)
    course = water_cycle_course(COURSE)
    write_course_json(store, course)
    queue = JobQueue(db_url)
    targets = race_targets(course)
    ids = enqueue_targets(queue, org_id, COURSE, targets)

    # Real OS processes forked from a fresh fork server (no inherited threads or connections) that
    # imported the worker code once, so five children start in milliseconds instead of seconds each.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.support.media", "ignite_dagster.media.worker", "openai", "psycopg",
                                "boto3", "botocore.session"])
    start, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    with OpenAICompatServer() as server:
        procs = [ctx.Process(target=work_queue_in_process, args=(db_url, store_spec, server.base_url, start, out))
                 for _ in range(WORKERS)]
        regen = ctx.Process(target=regenerate_in_process, args=(store_spec, COURSE, start, stop, out))
        for p in [*procs, regen]:
            p.start()
        assert [out.get(timeout=60) for _ in range(WORKERS + 1)] == ["ready"] * (WORKERS + 1)
        start.set()  # everyone is imported and connected: the race starts now
        reports = [out.get(timeout=60) for _ in procs]  # the workers drained the queue
        stop.set()
        regen_report = out.get(timeout=30)
        for p in [*procs, regen]:
            p.join(10)
            assert p.exitcode == 0
        assert len(server.requests_to("/v1/images/generations")) == 20  # one image per job, none regenerated

    jobs = {j.id: j for j in (queue.get(i, "ai_media_jobs") for i in ids)}
    assert {j.status for j in jobs.values()} == {"done"}, [(j.status, j.error) for j in jobs.values()]
    assert sum(r["done"] for r in reports) == 20
    # the regeneration really interleaved with the attachments: some write carried part of the media over
    assert any(0 < n < 20 for n in regen_report["carried"]), regen_report

    doc = json.loads(store.get(course_path(COURSE)).data)
    text = json.dumps(doc)
    for job in jobs.values():
        assert target_url(doc, job.target_ref) == job.result_url, job.target_ref
        assert text.count(json.dumps(job.result_url)[1:-1]) == 1, f"{job.result_url} attached more than once"
    for section in doc["studyTexts"]:
        values = IMAGE_MARKER.findall(section["content"])
        assert len(values) == 2 and all(is_attached(v) for v in values)  # marker replaced once + one appended
    report = media_completeness(store, COURSE, [j.target_ref for j in jobs.values()])
    assert report.passed and report.urls == 20, report.metadata()
    # the regeneration's own content is what is stored (it was not rolled back by the attachments)
    assert [i["text"] for i in doc["items"]] == [i["text"] for i in course["items"]]
    print(f"\n{store_spec['kind']}: workers {reports}; regeneration {regen_report}")
