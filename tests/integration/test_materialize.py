"""Courses materialized from Dagster (the UI's Materialize, a backfill) go through the queue: a claimed
job attempt per course, the last stored request by default, run-config overrides, never a course that
another worker holds. Domain function against real Postgres, then the asset run in process."""

from __future__ import annotations

import json

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course_jobs.materialize import take_course
from ignite_dagster.course_jobs.submit import submit_course_request
from ignite_dagster.defs.partitions import COURSES_PARTITIONS_NAME
from ignite_dagster.defs.run_tags import COURSE_TAG, JOBS_TAG, ORG_TAG
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage.local import LocalObjectStore
from tests.support.code_location import code_location
from tests.support.jobs import new_course

CONTENT, METADATA = AssetKey("course_content"), AssetKey("course_metadata")


@pytest.fixture
def queue(db_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IGNITE_STORAGE_ROOT", str(tmp_path / "storage"))
    yield JobQueue(db_url)


@pytest.fixture
def store(tmp_path):
    return LocalObjectStore(tmp_path / "storage")


def _take(queue, store, course_id, worker="dagster:run-1", model_configured=False, **kw):
    return take_course(queue, store, course_id, worker_id=worker, model_configured=model_configured, **kw)


def test_a_queued_job_is_claimed_not_duplicated(queue, store, org_id):
    job = queue.enqueue_course(new_course("queued-1"), organization_id=org_id).job
    t = _take(queue, store, "queued-1")
    assert (t.outcome, t.job.id, t.job.attempt, t.job.status) == ("claimed", job.id, 1, "processing")
    assert len(queue.list(course_id="queued-1")) == 1


def test_a_course_held_by_another_worker_is_reported_busy_and_left_alone(queue, store, org_id):
    queue.enqueue_course(new_course("held-1"), organization_id=org_id)
    (held,) = queue.claim_course_jobs("dagster-sensor:tick", limit=1)
    t = _take(queue, store, "held-1")
    assert t.outcome == "busy" and t.job.id == held.id and "dagster-sensor:tick" in t.message
    row = queue.get(held.id)
    assert (row.attempt, row.worker_id, row.status) == (1, "dagster-sensor:tick", "processing")
    assert len(queue.list(course_id="held-1")) == 1


def test_a_finished_course_gets_a_new_job_from_its_last_request_with_overrides(queue, store, org_id):
    request = CourseRequest(course_id="again-1", subject="addition", grade_band="3-5", items_per_group=6,
                            notes="use apples")
    first = submit_course_request(queue, store, request, organization_id=org_id, priority=7).job
    (claimed,) = queue.claim_course_jobs("w", limit=1)
    assert queue.complete(claimed.id, "ai_course_jobs", claimed.attempt, {})

    # notes need the model path: the rebuilt request is checked like any submission
    t = _take(queue, store, "again-1", overrides={"items_per_group": 4, "subject": None}, model_configured=True)
    assert t.outcome == "created" and t.job.id != first.id
    new = queue.get(t.job.id)
    assert (new.status, new.attempt, new.worker_id) == ("processing", 1, "dagster:run-1")
    assert (new.organization_id, new.priority, new.subject, new.items_per_group) == (org_id, 7, "addition", 4)
    assert new.requested_by == "dagster:run-1" and new.has_special_requests
    # the notes travelled with the request (stored apart, under the new job's id)
    from ignite_dagster.course_jobs.submit import load_special_requests

    assert load_special_requests(store, new.id) == {"notes": "use apples"}


def test_overrides_are_refused_while_the_course_has_a_queued_job(queue, store, org_id):
    job = queue.enqueue_course(new_course("queued-2"), organization_id=org_id).job
    t = _take(queue, store, "queued-2", overrides={"items_per_group": 3})
    assert t.outcome == "refused" and "overrides" in t.message
    assert queue.get(job.id).status == "pending"  # untouched


def test_a_course_never_requested_is_refused_by_name(queue, store):
    t = _take(queue, store, "never-asked")
    assert t.outcome == "refused" and "never-asked" in t.message and t.job is None


def _materialize(instance, partitions, run_config=None, raise_on_error=True):
    """One run of the course assets over ``partitions`` (a range, as a backfill launches it)."""
    instance.add_dynamic_partitions(COURSES_PARTITIONS_NAME, partitions)
    job = code_location().resolve_implicit_global_asset_job_def().get_subset(asset_selection={CONTENT, METADATA})
    tags = {"dagster/asset_partition_range_start": partitions[0], "dagster/asset_partition_range_end": partitions[-1]}
    return job.execute_in_process(instance=instance, tags=tags, raise_on_error=raise_on_error,
                                  run_config=run_config or {})


def _materializations(result):
    return sorted(
        (e.event_specific_data.materialization.asset_key.to_user_string(), e.event_specific_data.materialization.partition,
         e.event_specific_data.materialization.metadata["source"].value)
        for e in result.all_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION)


def test_materializing_a_partition_regenerates_the_course_through_a_job_attempt(queue, store, org_id, tmp_path):
    first = queue.enqueue_course(new_course("mat-1", subject="addition"), organization_id=org_id).job
    with DagsterInstance.ephemeral() as instance:
        result = _materialize(instance, ["mat-1"])
        assert result.success
        assert _materializations(result) == [("course_content", "mat-1", "materialization"),
                                             ("course_metadata", "mat-1", "materialization")]
        row = queue.get(first.id)
        assert (row.status, row.attempt, row.dagster_run_id) == ("done", 1, result.run_id)
        run = instance.get_run_by_id(result.run_id)
        assert run.tags[ORG_TAG] == str(org_id) and run.tags[COURSE_TAG] == "mat-1"
        assert run.tags[f"{COURSE_TAG}/mat-1"] == "true" and run.tags[JOBS_TAG] == f"{first.id}:1"
        doc1 = json.loads((tmp_path / "storage/courses/mat-1/course.json").read_text())
        assert doc1["generation"]["jobId"] == str(first.id)

        # again, with an override: a new job from the last request, and course.json rewritten by it
        result = _materialize(instance, ["mat-1"], run_config={
            "ops": {"generate_course_assets": {"config": {"items_per_group": 5}}}})
        assert result.success
        jobs = queue.list(course_id="mat-1")
        assert len(jobs) == 2 and jobs[0].id != first.id
        assert (jobs[0].status, jobs[0].items_per_group, jobs[0].dagster_run_id) == ("done", 5, result.run_id)
        doc2 = json.loads((tmp_path / "storage/courses/mat-1/course.json").read_text())
        assert doc2["generation"]["jobId"] == str(jobs[0].id)
        assert instance.get_materialized_partitions(CONTENT) == {"mat-1"}


def test_one_run_materializes_many_partitions_and_fails_visibly_for_the_bad_one(queue, org_id):
    for cid, subject in (("many-a", "addition"), ("many-b", "division"), ("many-c", "astrophysics")):
        queue.enqueue_course(new_course(cid, subject=subject, strategy="deterministic" if cid == "many-c" else None),
                             organization_id=org_id)
    with DagsterInstance.ephemeral() as instance:
        result = _materialize(instance, ["many-a", "many-b", "many-c"], raise_on_error=False)
        assert not result.success
        parts = {p for k, p, _ in _materializations(result) if k == "course_content"}
        assert parts == {"many-a", "many-b"}  # the failed course is not reported materialized
        failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
        assert "many-c" in str(failure.event_specific_data.error_display_string or failure.message)
    statuses = {j.course_id: j.status for j in queue.list(limit=10)}
    assert statuses == {"many-a": "done", "many-b": "done", "many-c": "dead_letter"}


def test_a_range_run_reports_every_course_and_its_check(queue, org_id):
    for cid in ("range-a", "range-b"):
        queue.enqueue_course(new_course(cid), organization_id=org_id)
    with DagsterInstance.ephemeral() as instance:
        result = _materialize(instance, ["range-a", "range-b"])
        assert result.success
        assert {p for k, p, _ in _materializations(result)} == {"range-a", "range-b"}
        checks = {(e.event_specific_data.partition, e.event_specific_data.passed)
                  for e in result.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION}
        assert checks == {("range-a", True), ("range-b", True)}


def test_a_course_json_written_behind_the_pipelines_back_gets_a_reconciler_materialization(queue, store, org_id):
    from tests.support.courses import pack_course

    doc = pack_course({"course_id": "restored-1", "subject": "addition", "grade_band": "3-5"})
    store.put("courses/restored-1/course.json", json.dumps(doc).encode(), content_type="application/json")
    with DagsterInstance.ephemeral() as instance:
        result = code_location().resolve_job_def("report_course_drift").execute_in_process(instance=instance)
        assert result.success
        assert _materializations(result) == [("course_content", "restored-1", "reconciler"),
                                             ("course_metadata", "restored-1", "reconciler")]
        assert instance.get_materialized_partitions(CONTENT) == {"restored-1"}
        assert instance.has_dynamic_partition(COURSES_PARTITIONS_NAME, "restored-1")
        # the next sweep finds nothing new
        again = code_location().resolve_job_def("report_course_drift").execute_in_process(instance=instance)
        assert _materializations(again) == []


def test_a_job_the_reconciler_completes_shows_as_a_reconciler_materialization(queue, store, org_id, db_url):
    from datetime import UTC, datetime, timedelta

    from ignite_dagster.config import Settings
    from ignite_dagster.course_jobs.worker import CourseWorker
    from ignite_dagster.defs.maintenance.jobs import reconcile_job
    from ignite_dagster.queue.lease import Lease
    from tests.integration.test_reconcile import _generated_but_unrecorded
    from tests.support.jobs import set_columns

    worker = CourseWorker(Settings(), queue, store, Lease(queue, 60))
    job = _generated_but_unrecorded(worker, queue, store, org_id, "addition-drift")
    set_columns(db_url, "ai_course_jobs", job.id, last_heartbeat=datetime.now(UTC) - timedelta(minutes=5))
    with DagsterInstance.ephemeral() as instance:
        result = code_location().resolve_job_def(reconcile_job.name).execute_in_process(instance=instance)
        assert result.success
        assert _materializations(result) == [("course_content", "addition-drift", "reconciler"),
                                             ("course_metadata", "addition-drift", "reconciler")]
        mat = next(e.event_specific_data.materialization for e in result.all_events
                   if e.event_type == DagsterEventType.ASSET_MATERIALIZATION)
        assert mat.metadata["job_id"].value == str(job.id) and str(job.id) in mat.metadata["detail"].value
        assert instance.get_materialized_partitions(CONTENT) == {"addition-drift"}
    assert queue.get(job.id).status == "done"


def test_claims_of_a_dead_materialization_run_go_back_to_the_queue(sensor_resources, queue, store, org_id):
    from ignite_dagster.defs.courses.sensors import build_materialization_run_sensors
    from tests.support.runs import dying_job, fire_failure_sensor

    queue.enqueue_course(new_course("dies-1"), organization_id=org_id)
    t = _take(queue, store, "dies-1", worker="dagster:dead-run")
    assert queue.progress(t.job.id, "ai_course_jobs", t.job.attempt, "fill", 20)  # a stage ran
    sensor = build_materialization_run_sensors()[0]
    with DagsterInstance.ephemeral() as instance:
        result = dying_job.execute_in_process(instance=instance, raise_on_error=False,
                                              tags={JOBS_TAG: f"{t.job.id}:{t.job.attempt}"})
        fire_failure_sensor(sensor, instance, result, sensor_resources)
    row = queue.get(t.job.id)
    assert (row.status, row.reason_code) == ("failed", "run_failed") and result.run_id in row.error


def test_a_materialization_waits_for_the_course_another_worker_holds_and_never_claims_it(queue, org_id):
    """The sensor path holds the course; the materialization logs that it waits, claims nothing, and
    succeeds once the holder finishes the job (the holder reported the materialization)."""
    import threading
    import time

    from dagster import DagsterEventType as ET

    job = queue.enqueue_course(new_course("held-2"), organization_id=org_id).job
    (held,) = queue.claim_course_jobs("dagster-sensor:tick", limit=1)
    with DagsterInstance.ephemeral() as instance:
        def finish_when_waited_for():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the holder finishes once the materialization said it waits
                try:
                    said = any("waiting for it to finish" in (e.user_message or "")
                               for run in instance.get_runs() for e in instance.all_logs(run.run_id))
                except Exception:  # noqa: BLE001 - the ephemeral instance's sqlite, read from a second thread
                    said = False   # while the run writes, can answer "database table is locked": read again
                if said:
                    assert queue.complete(held.id, "ai_course_jobs", held.attempt, {})
                    return
                time.sleep(0.1)

        finisher = threading.Thread(target=finish_when_waited_for)
        finisher.start()
        result = _materialize(instance, ["held-2"])
        finisher.join()
        assert result.success
        assert _materializations(result) == []  # nothing generated here
        assert not any(e.event_type == ET.STEP_FAILURE for e in result.all_events)
    row = queue.get(job.id)
    assert (row.status, row.attempt, row.worker_id) == ("done", 1, "dagster-sensor:tick")
    assert len(queue.list(course_id="held-2")) == 1
