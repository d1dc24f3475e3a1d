"""The media job's Dagster shell without the daemon: the claiming sensor, the run (in process, real
queue, real storage, loopback image server), the materialization and check it reports, and the
run-failure sensor that fails claims a dead run still holds."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    SensorResult,
    SkipReason,
    build_sensor_context,
)
from dagster._core.test_utils import create_run_for_test

from ignite_dagster.course_jobs.persist import write_course_json
from ignite_dagster.defs.media.jobs import MEDIA_JOB
from ignite_dagster.defs.media.sensors import build_media_jobs_sensor, build_media_sensors
from ignite_dagster.defs.run_tags import JOBS_TAG, decode_claims, encode_claims
from ignite_dagster.media.markers import IMAGE_MARKER
from ignite_dagster.queue import JobQueue, NewMediaJob, TargetRef
from ignite_dagster.storage import LocalObjectStore
from ignite_dagster.storage.keys import course_path
from tests.support.code_location import code_location
from tests.support.media import IMAGE_MODEL, PRICES, enqueue_targets, water_cycle_course
from tests.support.openai_server import IMAGES, OpenAICompatServer, api_error, image_png
from tests.support.runs import dying_job, fire_failure_sensor

media_run_failure_sensor = build_media_sensors(1)[1]


@pytest.fixture
def env(db_url, monkeypatch, tmp_path):
    with OpenAICompatServer() as server:
        values = {"DATABASE_URL": db_url, "IGNITE_STORAGE_ROOT": str(tmp_path / "storage"),
                  "IGNITE_MAX_CONCURRENT_RUNS": "2", "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": server.base_url,
                  "IGNITE_IMAGE_MODEL": IMAGE_MODEL, "IGNITE_LLM_PRICES": PRICES, "IGNITE_IMAGE_SIZE": "256x256",
                  "IGNITE_BACKOFF_BASE_SECONDS": "0", "IGNITE_BACKOFF_CAP_SECONDS": "0"}
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        yield {"queue": JobQueue(db_url), "store": LocalObjectStore(tmp_path / "storage"), "server": server}


def _tick(instance, resources, per_run: int = 3):
    with build_sensor_context(instance=instance, resources=resources) as context:
        return build_media_jobs_sensor(1, per_run=per_run)(context)


def _stimuli(doc, n):
    return [{"type": "item_stimulus", "itemId": it["id"]} for it in doc["items"][:n]]


def test_sensor_batches_and_run_keys(sensor_resources, env, org_id):
    queue = env["queue"]
    doc = water_cycle_course("wc-s")
    ids = enqueue_targets(queue, org_id, "wc-s", _stimuli(doc, 5))
    with DagsterInstance.ephemeral() as instance:
        result = _tick(instance, sensor_resources)
        assert isinstance(result, SensorResult)
        assert [len(decode_claims(r.tags[JOBS_TAG])) for r in result.run_requests] == [3, 2]
        for r in result.run_requests:
            first_id, attempt = decode_claims(r.tags[JOBS_TAG])[0]
            assert r.run_key == f"media:{first_id}:{attempt}" and attempt == 1
            assert r.run_config["ops"]["claimed_media_jobs"]["config"]["jobs"] == r.tags[JOBS_TAG]
        assert result.dynamic_partitions_requests[0].partition_keys == ["wc-s"]
        assert {queue.get(i, "ai_media_jobs").status for i in ids} == {"processing"}
        assert isinstance(_tick(instance, sensor_resources), SkipReason)  # nothing left to claim

        # a retry is a new attempt, hence a new run key
        first_id, _ = decode_claims(result.run_requests[0].tags[JOBS_TAG])[0]
        queue.fail(first_id, "ai_media_jobs", 1, "e", "provider_unavailable", True, backoff_base=timedelta(0))
        retry = _tick(instance, sensor_resources)
        assert retry.run_requests[0].run_key == f"media:{first_id}:2"


def test_sensor_claims_nothing_when_media_runs_are_at_capacity(sensor_resources, env, org_id):
    queue = env["queue"]
    ids = enqueue_targets(queue, org_id, "wc-s", _stimuli(water_cycle_course("wc-s"), 2))
    with DagsterInstance.ephemeral() as instance:
        create_run_for_test(instance, job_name=MEDIA_JOB, status=DagsterRunStatus.STARTED)
        create_run_for_test(instance, job_name=MEDIA_JOB, status=DagsterRunStatus.STARTING)
        result = _tick(instance, sensor_resources)
    assert isinstance(result, SkipReason) and "capacity" in result.skip_message
    assert {queue.get(i, "ai_media_jobs").status for i in ids} == {"pending"}


def test_run_attaches_reports_materialization_and_check_and_fails_only_the_refused_branch(sensor_resources, env, org_id):
    queue, store, server = env["queue"], env["store"], env["server"]

    def model(request):
        if "forbidden" in (request.json or {}).get("prompt", ""):
            return api_error(400, "rejected by our safety system", code="content_policy_violation",
                             type_="invalid_request_error")
        return image_png()

    server.respond_with(IMAGES, model)
    good = water_cycle_course("wc-good")
    write_course_json(store, good)
    write_course_json(store, water_cycle_course("wc-bad"))
    good_ids = enqueue_targets(queue, org_id, "wc-good", [
        {"type": "study_text", "sectionId": t["id"], "markerIndex": 0} for t in good["studyTexts"]])
    bad = queue.enqueue_media(NewMediaJob(course_id="wc-bad", prompt="something forbidden",
                                          target_ref=TargetRef(type="item_stimulus", itemId=0)),
                              organization_id=org_id).job.id
    with DagsterInstance.ephemeral() as instance:
        result = code_location().resolve_job_def(MEDIA_JOB).execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {"claimed_media_jobs": {"config": {"claim_now": 10}}}})
        assert not result.success  # the refused branch fails the run, after the good branch reported
        mats = [e.event_specific_data.materialization for e in result.all_events
                if e.event_type == DagsterEventType.ASSET_MATERIALIZATION]
        assert [(m.asset_key, m.partition) for m in mats] == [(AssetKey("course_media"), "wc-good")]
        md = mats[0].metadata
        assert md["count"].value == 2 and md["bytes"].value > 0 and md["model"].value == IMAGE_MODEL
        assert md["cost_usd"].value == pytest.approx(0.08) and len(md["targets"].value) == 2
        checks = [e.event_specific_data for e in result.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
        assert [(c.partition, c.passed) for c in checks] == [("wc-good", True)]
        assert set(instance.get_dynamic_partitions("courses")) == {"wc-good", "wc-bad"}

        # the run-failure sensor finds nothing left to fail: every claim was already marked (fenced)
        fire_failure_sensor(media_run_failure_sensor, instance, result, sensor_resources)
    assert {queue.get(i, "ai_media_jobs").status for i in good_ids} == {"done"}
    row = queue.get(bad, "ai_media_jobs")
    assert (row.status, row.reason_code) == ("dead_letter", "content_refused")
    doc = json.loads(store.get(course_path("wc-good")).data)
    urls = [IMAGE_MARKER.findall(t["content"])[0] for t in doc["studyTexts"]]
    assert sorted(urls) == sorted(queue.get(i, "ai_media_jobs").result_url for i in good_ids)


def test_run_failure_sensor_fails_claims_a_dead_run_still_holds(sensor_resources, env, org_id):
    queue = env["queue"]
    ids = enqueue_targets(queue, org_id, "wc-s", _stimuli(water_cycle_course("wc-s"), 2))
    held = queue.claim_media_jobs("dead-run", limit=1)[0]
    assert queue.progress(held.id, "ai_media_jobs", held.attempt, "generate", 10)  # a stage ran: a failure, not a release
    done = queue.claim_media_jobs("dead-run", limit=1)[0]
    queue.complete(done.id, "ai_media_jobs", done.attempt, {"result_url": "x"})
    tags = {JOBS_TAG: encode_claims([(held.id, held.attempt), (done.id, done.attempt)])}
    with DagsterInstance.ephemeral() as instance:
        result = dying_job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        fire_failure_sensor(media_run_failure_sensor, instance, result, sensor_resources)
    row = queue.get(held.id, "ai_media_jobs")
    assert (row.status, row.reason_code) == ("failed", "run_failed") and result.run_id in row.error
    assert queue.get(done.id, "ai_media_jobs").status == "done"
    assert sorted(ids) == sorted([held.id, done.id])
