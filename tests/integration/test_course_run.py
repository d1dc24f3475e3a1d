"""A generate_courses run in process against a real Postgres and storage: per-course isolation,
materializations and checks, a failed course shown on its partition, the run's event count, and the
run-failure sensor's fencing."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
)

from ignite_dagster.defs.courses.jobs import GENERATE_JOB
from ignite_dagster.defs.courses.sensors import build_course_sensors
from ignite_dagster.defs.run_tags import JOBS_TAG, encode_claims
from ignite_dagster.queue import JobQueue
from tests.support.code_location import code_location
from tests.support.jobs import new_course, set_columns
from tests.support.openai_server import CHAT, OpenAICompatServer, ScriptedCourseModel
from tests.support.runs import dying_job, fire_failure_sensor

course_run_failure_sensor = build_course_sensors(1)[1]
# Dagster events of a 10-course run, per course (every event the run logged, read back from the instance).
# Measured with a finish_course step mapped per course: 14.4 through the daemon (bench/pipeline_bench.py
# --burst 10). With one finish_courses step: 6.1 there, 5.7 here in process (4 per course: 2
# materializations, 2 checks; 17 for the run). The margin is half an event per course: a per-course
# event more fails.
EVENTS_PER_COURSE, EVENTS_MARGIN = 5.7, 0.5
SUBJECTS = ("addition", "division", "subtraction", "multiplication")


@pytest.fixture
def queue(db_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IGNITE_STORAGE_ROOT", str(tmp_path / "storage"))
    yield JobQueue(db_url)


def test_one_bad_course_never_fails_its_neighbours(sensor_resources, queue, org_id, tmp_path):
    good = [queue.enqueue_course(new_course(f"good-{i}", subject=s), organization_id=org_id).job.id
            for i, s in enumerate(("addition", "division"))]
    bad = queue.enqueue_course(new_course("bad-1", subject="astrophysics", strategy="deterministic"),
                               organization_id=org_id).job.id
    with DagsterInstance.ephemeral() as instance:
        result = code_location().resolve_job_def(GENERATE_JOB).execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {"claimed_course_jobs": {"config": {"claim_now": 10}}}})
        assert not result.success  # the bad branch fails the run, visibly
        mats = {(e.event_specific_data.materialization.asset_key, e.event_specific_data.materialization.partition)
                for e in result.all_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION}
        assert mats == {(AssetKey(k), p) for k in ("course_content", "course_metadata") for p in ("good-0", "good-1")}
        evaluations = [e.event_specific_data for e in result.all_events
                       if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
        checks = {(c.check_name, c.partition, c.passed) for c in evaluations}
        assert checks == {(name, p, True) for name in ("course_schema_valid", "course_quality")
                          for p in ("good-0", "good-1")}
        # the quality check carries its figures; the content materialization a preview of the course
        quality = next(c for c in evaluations if c.check_name == "course_quality")
        assert quality.metadata["distinct_options_share"].value == 1.0
        assert quality.metadata["on_subject_share"].value == 1.0 and quality.metadata["gates_failed"].value == "none"
        content = next(e.event_specific_data.materialization for e in result.all_events
                       if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
                       and e.event_specific_data.materialization.asset_key == AssetKey("course_content"))
        preview = content.metadata["preview"].value
        assert preview.startswith("### ") and "**Groups:**" in preview and preview.count("✅") == 3
        failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
        assert {e.step_key for e in failures} == {"finish_courses"}  # one step reports every course...
        # ...and fails naming the bad one, whose select_strategy stage failed
        assert "1 of 3 course(s) failed: bad-1 (job " + str(bad) in failures[0].event_specific_data.error.message
        observed = {(e.event_specific_data.asset_observation.partition,
                     e.event_specific_data.asset_observation.metadata["reason_code"].value)
                    for e in result.all_events if e.event_type == DagsterEventType.ASSET_OBSERVATION}
        assert observed == {("bad-1", "no_pack")}

        # the run-failure sensor then finds nothing to change: every job was marked by the run (fenced)
        fire_failure_sensor(course_run_failure_sensor, instance, result, sensor_resources)
    assert [queue.get(i).status for i in good] == ["done", "done"]
    row = queue.get(bad)
    assert (row.status, row.reason_code) == ("dead_letter", "no_pack") and "astrophysics" in row.error
    assert not (tmp_path / "storage/courses/bad-1/course.json").exists()
    doc = json.loads((tmp_path / "storage/courses/good-0/course.json").read_text())
    assert doc["generation"]["jobId"] == str(good[0])


def test_run_failure_sensor_fails_only_claims_the_dead_run_still_holds(sensor_resources, queue, org_id):
    for i in range(2):
        queue.enqueue_course(new_course(f"c{i}"), organization_id=org_id)
    held, finished = queue.claim_course_jobs("dead-run", limit=2)
    assert queue.progress(held.id, "ai_course_jobs", held.attempt, "fill", 20)  # a stage ran: a failure, not a release
    assert queue.complete(finished.id, "ai_course_jobs", finished.attempt, {})
    tags = {JOBS_TAG: encode_claims([(held.id, held.attempt), (finished.id, finished.attempt)])}
    with DagsterInstance.ephemeral() as instance:
        result = dying_job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        fire_failure_sensor(course_run_failure_sensor, instance, result, sensor_resources)
    row = queue.get(held.id)
    assert (row.status, row.reason_code) == ("failed", "run_failed") and result.run_id in row.error
    assert queue.get(finished.id).status == "done"


def _run_claims(instance, jobs):
    """A generate_courses run of ``jobs`` as the course sensor launches it (their claims in the config)."""
    return code_location().resolve_job_def(GENERATE_JOB).execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"ops": {"claimed_course_jobs": {"config": {"jobs": encode_claims([(j.id, j.attempt)
                                                                                       for j in jobs])}}}})


def test_a_ten_course_run_logs_no_more_dagster_events_per_course_than_measured(queue, org_id):
    for i in range(10):
        queue.enqueue_course(new_course(f"c-{i}", subject=SUBJECTS[i % 4]), organization_id=org_id)
    jobs = queue.claim_course_jobs("sensor", limit=10)
    with DagsterInstance.ephemeral() as instance:
        result = _run_claims(instance, jobs)
        assert result.success
        kinds = Counter(e.dagster_event.event_type_value if e.dagster_event else "LOG_MESSAGE"
                        for e in instance.all_logs(result.run_id))
    per_course = sum(kinds.values()) / 10
    print(f"\n{per_course:.1f} Dagster events per course in a 10-course run: {dict(kinds.most_common())}")
    assert kinds["ASSET_MATERIALIZATION"] == 20 and kinds["ASSET_CHECK_EVALUATION"] == 20  # every course shown
    assert per_course <= EVENTS_PER_COURSE + EVENTS_MARGIN, f"more events per course than measured: {kinds}"
    assert [queue.get(j.id).status for j in jobs] == ["done"] * 10


def test_a_course_that_cannot_begin_is_shown_failed_on_its_partition_and_its_neighbours_materialized(
        queue, org_id, db_url, sensor_resources):
    good = [queue.enqueue_course(new_course(f"ok-{i}", subject=s), organization_id=org_id).job.id
            for i, s in enumerate(("addition", "division"))]
    bad = queue.enqueue_course(new_course("no-requests"), organization_id=org_id).job.id
    set_columns(db_url, "ai_course_jobs", bad, has_special_requests=True)  # its stored requests are missing
    jobs = queue.claim_course_jobs("sensor", limit=3)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("courses", [j.course_id for j in jobs])  # the sensor adds them
        result = _run_claims(instance, jobs)
        assert not result.success

        # the partitions, as the UI reads them: the good ones materialized, the bad one observed failed
        def records(fetch, partition):
            return fetch(AssetRecordsFilter(asset_key=AssetKey("course_content"), asset_partitions=[partition]),
                         limit=5).records
        assert all(len(records(instance.fetch_materializations, f"ok-{i}")) == 1 for i in range(2))
        assert records(instance.fetch_materializations, "no-requests") == []
        (observed,) = records(instance.fetch_observations, "no-requests")
        meta = observed.asset_observation.metadata
        assert (meta["outcome"].value, meta["reason_code"].value, meta["job_id"].value) == (
            "failed", "special_requests_missing", str(bad))
        assert records(instance.fetch_observations, "ok-0") == []

        # the run's logs: one error line naming it; the step fails naming it once every course is reported
        errors = [e.user_message for e in instance.all_logs(result.run_id)
                  if e.dagster_event is None and e.level >= 40]
        assert len(errors) == 1 and errors[0].startswith(f"no-requests (job {bad}")
        (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
        assert failure.step_key == "finish_courses"
        assert "1 of 3 course(s) failed: no-requests" in failure.event_specific_data.error.message
        fire_failure_sensor(course_run_failure_sensor, instance, result, sensor_resources)
    assert [queue.get(i).status for i in good] == ["done", "done"]
    assert queue.get(bad).reason_code == "special_requests_missing"


def test_model_courses_are_reported_as_each_finishes_not_in_the_runs_plan_order(queue, org_id, monkeypatch,
                                                                                 tmp_path):
    scripted = ScriptedCourseModel()

    def model(request):  # every answer about volcanoes comes late: that course finishes last
        reply = scripted(request)
        return dataclasses.replace(reply, delay=0.8) if "Subject: volcanoes" in request.text() else reply

    with OpenAICompatServer() as server:
        server.respond_with(CHAT, model)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("IGNITE_TEXT_MODEL", "test-model")
        for course_id, subject in (("slow", "volcanoes"), ("fast-1", "rivers"), ("fast-2", "forests")):
            queue.enqueue_course(new_course(course_id, subject=subject), organization_id=org_id)
        jobs = queue.claim_course_jobs("sensor", limit=3)
        assert [j.course_id for j in jobs][0] == "slow"  # planned first
        with DagsterInstance.ephemeral() as instance:
            result = _run_claims(instance, jobs)
            assert result.success
    reported = [e.event_specific_data.materialization.partition for e in result.all_events
                if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
                and e.event_specific_data.materialization.asset_key == AssetKey("course_content")]
    assert sorted(reported[:2]) == ["fast-1", "fast-2"] and reported[2:] == ["slow"]
    assert all(queue.get(j.id).status == "done" for j in jobs)
    # prepare's artifacts are written by each course's own thread while its model calls are in flight
    for job in jobs:
        debug = tmp_path / "storage" / f"courses/debug/jobs/{job.id}"
        assert {p.name for p in debug.glob("*.json")} >= {"strategy.json", "skeleton.json", "plan.json", "draft.json",
                                                          "summary.json"}
