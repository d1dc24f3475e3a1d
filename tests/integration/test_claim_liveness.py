"""Claims alive from the moment they are made, dead runs failed, capacity that cannot leak (issue 15).

Real Postgres queue, real (ephemeral) Dagster instance; the parts without a database are
tests/unit/test_claim_liveness.py, the daemon-level proof is tests/e2e/test_e2e_crash.py."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from ignite_dagster.course_jobs.reconcile import reconcile
from ignite_dagster.defs.courses.jobs import GENERATE_JOB
from ignite_dagster.defs.run_liveness import fail_dead_runs, free_runs, keep_waiting_claims_alive
from ignite_dagster.defs.run_tags import JOBS_TAG, encode_claims
from ignite_dagster.local.stack import CrashLoop, Stack
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage import LocalObjectStore
from tests.support.jobs import new_course, set_columns

C = "ai_course_jobs"
BACKOFF = {"backoff_base": timedelta(0), "backoff_cap": timedelta(0)}


@pytest.fixture
def queue(db_url) -> JobQueue:
    return JobQueue(db_url)


def _claimed(queue: JobQueue, org_id, course_id: str = "addition-live", **kw):
    queue.enqueue_course(new_course(course_id, **kw), organization_id=org_id)
    return queue.claim_course_jobs("dagster-sensor:test")[0]


def _silence(db_url, job, minutes: float = 10) -> None:
    set_columns(db_url, C, job.id, last_heartbeat=datetime.now(UTC) - timedelta(minutes=minutes))


def test_keep_alive_heartbeats_only_the_attempt_that_holds_the_claim(queue, db_url, org_id):
    job = _claimed(queue, org_id)
    _silence(db_url, job)
    assert queue.keep_claims_alive(C, [(job.id, job.attempt - 1)]) == 0  # an older attempt vouches for nothing
    assert queue.mark_stale(timedelta(minutes=5)) != []  # silent: detected
    job = queue.claim_course_jobs("w")[0]
    _silence(db_url, job)
    assert queue.keep_claims_alive(C, [(job.id, job.attempt)]) == 1
    assert queue.mark_stale(timedelta(minutes=5)) == []  # a queued run's claim is not taken for dead
    assert queue.get(job.id).status == "processing"


def test_stale_claim_that_never_ran_a_stage_is_released_without_spending_a_retry(queue, db_url, org_id):
    job = _claimed(queue, org_id, max_retries=1)
    _silence(db_url, job)
    assert [r.job_id for r in queue.mark_stale(timedelta(minutes=5))] == [job.id]
    released = queue.get(job.id)
    assert (released.status, released.retry_count, released.reason_code) == ("pending", 0, "heartbeat_timeout")
    assert [e.step for e in queue.events(job.id)] == ["claim_released"]
    again = queue.claim_course_jobs("w")[0]
    assert (again.attempt, again.retry_count) == (2, 0)
    # once a stage ran, silence is a real failure: stale, and the next claim spends a retry
    assert queue.progress(again.id, C, again.attempt, "fill", 20)
    _silence(db_url, again)
    queue.mark_stale(timedelta(minutes=5))
    assert queue.get(job.id).status == "stale"
    assert queue.claim_course_jobs("w")[0].retry_count == 1


def test_dead_runs_claims_release_unstarted_fail_started_and_free_releases_are_bounded(queue, db_url, org_id):
    job = _claimed(queue, org_id, max_retries=1)
    for _ in range(3):  # a run that keeps dying before its first stage: three free releases
        assert queue.release_or_fail_claim(C, (job.id, job.attempt), "run died", "run_failed", **BACKOFF) == "pending"
        assert queue.get(job.id).retry_count == 0
        job = queue.claim_course_jobs("w")[0]
    # then it counts like any failure, so a job whose runs never start still reaches dead_letter
    assert queue.release_or_fail_claim(C, (job.id, job.attempt), "run died", "run_failed", **BACKOFF) == "failed"
    job = queue.claim_course_jobs("w")[0]
    assert job.retry_count == 1
    assert queue.release_or_fail_claim(C, (job.id, job.attempt - 1), "late", "run_failed", **BACKOFF) is None  # fenced
    assert queue.progress(job.id, C, job.attempt, "fill", 20)
    assert queue.release_or_fail_claim(C, (job.id, job.attempt), "run died", "run_failed", **BACKOFF) == "dead_letter"


def test_a_started_run_silent_past_the_limit_is_failed_and_frees_its_slot(queue, db_url, org_id):
    silent = _claimed(queue, org_id, "addition-dead")
    alive = _claimed(queue, org_id, "addition-alive")
    waiting = _claimed(queue, org_id, "addition-queued")
    for job in (silent, alive, waiting):
        _silence(db_url, job)
    with DagsterInstance.ephemeral() as instance:
        runs = {name: create_run_for_test(instance, job_name=GENERATE_JOB, status=status,
                                          tags={JOBS_TAG: encode_claims([(j.id, j.attempt)])})
                for name, status, j in (("dead", DagsterRunStatus.STARTED, silent),
                                        ("alive", DagsterRunStatus.STARTED, alive),
                                        ("starting", DagsterRunStatus.STARTING, waiting))}
        assert free_runs(instance, GENERATE_JOB, 4) == 1  # the zombie holds a slot...
        time.sleep(1.2)  # ...until it has been silent for longer than the limit (its start counts as a sign)
        assert queue.heartbeat(alive.id, C, alive.attempt)  # the live run's lease
        assert keep_waiting_claims_alive(instance, GENERATE_JOB, C, queue) == 1
        assert fail_dead_runs(instance, GENERATE_JOB, C, queue, timedelta(seconds=1)) == [runs["dead"].run_id]
        assert instance.get_run_by_id(runs["dead"].run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(runs["alive"].run_id).status == DagsterRunStatus.STARTED
        assert free_runs(instance, GENERATE_JOB, 4) == 2  # ...and no longer
        assert queue.get(waiting.id).last_heartbeat > datetime.now(UTC) - timedelta(minutes=1)  # kept alive
        assert fail_dead_runs(instance, GENERATE_JOB, C, queue, timedelta(seconds=1)) == []  # once


def test_reconciler_completes_only_the_attempt_that_wrote_the_file_and_not_under_a_live_claim(queue, db_url, org_id, tmp_path):
    store = LocalObjectStore(tmp_path)
    job = _claimed(queue, org_id, "addition-rec2")
    written_at = datetime.now(UTC)
    doc = {"id": "addition-rec2", "title": "Addition", "subject": "addition", "gradeBand": "3-5", "items": [{}, {}],
           "generation": {"jobId": str(job.id), "attempt": job.attempt, "strategy": "deterministic",
                          "packId": "addition.g3-5", "createdAt": written_at.isoformat().replace("+00:00", "Z")}}
    store.put("courses/addition-rec2/course.json", json.dumps(doc).encode(), content_type="application/json")
    _silence(db_url, job)
    quiet = timedelta(seconds=60)
    # a live run holds this claim: left to it
    assert reconcile(queue, store, quiet_for=quiet, held={(job.id, job.attempt)}).marked_done == []
    # the job was claimed again (attempt 2 queued): attempt 1's file does not complete attempt 2
    queue.mark_stale(timedelta(minutes=5))
    second = queue.claim_course_jobs("w")[0]
    assert second.attempt == job.attempt + 1
    _silence(db_url, second)
    assert reconcile(queue, store, quiet_for=quiet).marked_done == []
    assert queue.get(job.id).status == "processing"
    # the file of the attempt the row holds, with that attempt's run gone: done, with its telemetry
    doc["generation"].update(attempt=second.attempt, createdAt=datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    store.put("courses/addition-rec2/course.json", json.dumps(doc).encode(), content_type="application/json")
    report = reconcile(queue, store, quiet_for=quiet)
    assert [(j.job_id, j.course_id, j.attempt) for j in report.marked_done] == [(job.id, "addition-rec2", second.attempt)]
    done = queue.get(job.id)
    assert done.status == "done" and done.summary["reconciled"] is True and done.summary["items"] == 2
    assert done.summary["packId"] == "addition.g3-5" and done.processing_duration_ms is not None


def test_stack_restarts_an_exited_process_and_stops_on_a_crash_loop(tmp_path):
    stack = Stack(env={"PATH": "/usr/bin:/bin"}, log_dir=tmp_path)
    try:
        first = stack._spawn("worker", ["sleep", "60"])
        first.kill()
        first.wait(10)
        assert stack.restart_exited() == [("worker", -9)]
        assert stack.procs["worker"].pid != first.pid and stack.procs["worker"].poll() is None
        assert stack.restart_exited() == []  # nothing exited
        stack._spawn("flapping", ["false"])
        with pytest.raises(CrashLoop, match="flapping exited"):
            for _ in range(50):
                stack.procs["flapping"].wait(10)
                stack.restart_exited(max_restarts=3)
    finally:
        stack.stop(grace=5)
    assert all(p.poll() is not None for p in stack.procs.values())
    assert not subprocess.run(["pgrep", "-g", str(first.pid)], capture_output=True).stdout


def test_a_dead_asset_run_is_judged_by_its_claims_in_either_table(queue, db_url, org_id):
    from tests.support.jobs import new_media

    new_media(queue, org_id, "addition-media")
    media = queue.claim_media_jobs("materialize")[0]
    course = _claimed(queue, org_id, "addition-asset")
    set_columns(db_url, "ai_media_jobs", media.id, last_heartbeat=datetime.now(UTC) - timedelta(minutes=10))
    with DagsterInstance.ephemeral() as instance:
        dead = create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED,
                                   tags={JOBS_TAG: encode_claims([(media.id, media.attempt)])})
        alive = create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED,
                                    tags={JOBS_TAG: encode_claims([(course.id, course.attempt)])})
        sensor_run = create_run_for_test(instance, job_name=GENERATE_JOB, status=DagsterRunStatus.STARTED,
                                         tags={JOBS_TAG: encode_claims([(media.id, media.attempt)]),
                                               "ignite/queue": "course"})
        time.sleep(1.2)
        assert queue.heartbeat(course.id, C, course.attempt)
        assert fail_dead_runs(instance, None, None, queue, timedelta(seconds=1),
                              exclude_queues=("course", "media")) == [dead.run_id]
        assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
        assert instance.get_run_by_id(sensor_run.run_id).status == DagsterRunStatus.STARTED  # its sensor's business
