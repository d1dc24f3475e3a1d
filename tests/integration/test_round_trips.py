"""Round trips to Postgres per course (issue 23). A deterministic pack course takes 14–27 ms to generate,
so what the worker says to the database around it is most of a course's time.

Every statement and transaction command is counted (``tests/support/statements.py``) for one course
through the worker and for a generate_courses run launched as the sensor launches it. Measured before
the batching (sql/012): 22 per course through the worker; a run 26 for one course and 242 for ten (2 per
claim to read it and stamp the run, 13 for the stages' progress and events). After: 15 through the
worker; a run 3 + 16 per course (one statement for all its claims; each stage's start carries the events
decided since the last statement). Then 13 and 3 + 14: validation, and a repair with nothing to repair,
are quiet stages (``StagedWorker.stage(quiet=True)``: no progress write of their own). The tests fail when a change adds round trips beyond a small margin,
and check that the batching kept what the rows say: the events, their order, fencing.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from dagster import DagsterInstance

from ignite_dagster.budget import record_org_usage
from ignite_dagster.config import Settings
from ignite_dagster.course_jobs.worker import CourseWorker
from ignite_dagster.defs.courses.jobs import GENERATE_JOB
from ignite_dagster.defs.run_tags import encode_claims
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.errors import LostClaim
from ignite_dagster.queue.lease import Claim, Lease
from ignite_dagster.queue.staged import JobAborted
from ignite_dagster.storage.local import LocalObjectStore
from tests.support.code_location import code_location
from tests.support.jobs import new_course, set_columns
from tests.support.statements import counting_statements

C = "ai_course_jobs"
SUBJECTS = ("addition", "division", "subtraction", "multiplication")
# what one course costs now (see the module's docstring for before and after)
WORKER_COURSE = 13
RUN_FIXED, RUN_PER_COURSE = 3, 14  # the schema check (2) and the run's claims (1); then per course
MARGIN = 1  # per course: room for one statement, not for a stage's worth

STAGE_EVENTS = [("claimed", "info", 0), ("select_strategy", "success", 5), ("build_skeleton", "success", 10),
                ("fill", "success", 20), ("validate_normalize", "success", 70), ("repair", "success", 80),
                ("persist", "success", 90)]


def _events(queue: JobQueue, job_id) -> list[tuple]:
    return [(e.seq, e.step, e.status, e.progress) for e in queue.events(job_id)]


def _expected_events() -> list[tuple]:
    return [(seq, *event) for seq, event in enumerate(STAGE_EVENTS, start=1)]


@pytest.fixture
def queue(db_url) -> JobQueue:
    return JobQueue(db_url)


def _claimed(queue: JobQueue, org_id, n: int = 1):
    for i in range(n):
        queue.enqueue_course(new_course(f"c-{i}", subject=SUBJECTS[i % len(SUBJECTS)]), organization_id=org_id)
    jobs = queue.claim_course_jobs("sensor", limit=n)
    assert len(jobs) == n
    return jobs


def _worker(queue: JobQueue, tmp_path) -> CourseWorker:
    return CourseWorker(Settings(), queue, LocalObjectStore(tmp_path), Lease(queue, 60.0))


def test_a_deterministic_course_through_the_worker_costs_no_more_round_trips_than_measured(
        queue, org_id, tmp_path):
    (job,) = _claimed(queue, org_id)
    with counting_statements() as count:
        _worker(queue, tmp_path).process(job)
    print(f"\none deterministic course through the worker: {count}")
    assert count.total <= WORKER_COURSE + MARGIN, f"a course costs more round trips than it did: {count}"
    row = queue.get(job.id)
    assert (row.status, row.progress_percent) == ("done", 100)
    assert _events(queue, job.id) == _expected_events()
    events = queue.events(job.id)
    assert events[0].meta["pid"] > 0 and events[0].message == f"worker sensor attempt {job.attempt}"
    assert all(e.message.startswith(f"{e.step} done in ") for e in events[1:])


@pytest.fixture
def run_env(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IGNITE_STORAGE_ROOT", str(tmp_path / "storage"))
    monkeypatch.setenv("IGNITE_HEARTBEAT_SECONDS", "600")  # no heartbeat tick inside the count
    monkeypatch.setenv("IGNITE_RUN_DEAD_AFTER_SECONDS", "1800")
    yield


def _run(config: dict):
    with DagsterInstance.ephemeral() as instance, counting_statements() as count:
        result = code_location().resolve_job_def(GENERATE_JOB).execute_in_process(
            instance=instance, run_config={"ops": {"claimed_course_jobs": {"config": config}}})
    assert result.success
    return result, count


def test_a_run_stamps_its_claims_in_one_statement_and_costs_no_more_per_course_than_measured(
        queue, org_id, run_env):
    jobs = _claimed(queue, org_id, 10)
    result, count = _run({"jobs": encode_claims([(j.id, j.attempt) for j in jobs])})
    print(f"\na run of 10 deterministic courses: {count}")
    assert count.by_label["stamp_course_run_claims"] == 1 and count.by_label["set_job_run_id"] == 0
    assert count.total <= RUN_FIXED + 10 * (RUN_PER_COURSE + MARGIN), f"more round trips than measured: {count}"
    for job in jobs:
        row = queue.get(job.id)
        assert (row.status, row.dagster_run_id) == ("done", result.run_id)
        assert _events(queue, job.id) == _expected_events()


def test_a_manual_run_stamps_the_jobs_it_claims_in_one_statement(queue, org_id, run_env):
    for i in range(2):
        queue.enqueue_course(new_course(f"m-{i}"), organization_id=org_id)
    result, count = _run({"claim_now": 2})
    assert count.by_label["stamp_course_run_claims"] == 1 and count.by_label["set_job_run_id"] == 0
    rows = queue.list(C)
    assert [(r.status, r.dagster_run_id) for r in rows] == [("done", result.run_id)] * 2


def test_a_runs_claims_are_stamped_only_where_still_held(queue, db_url, org_id):
    held, superseded, finished = _claimed(queue, org_id, 3)
    set_columns(db_url, C, superseded.id, attempt=superseded.attempt + 1)  # claimed again elsewhere
    assert queue.complete(finished.id, C, finished.attempt, {})
    gone = uuid.uuid4()
    with counting_statements() as count:
        rows = queue.stamp_course_run("run-1", [(j.id, j.attempt) for j in (held, superseded, finished)]
                                      + [(gone, 1)])
    assert count.total == 1
    assert set(rows) == {held.id, superseded.id, finished.id}  # a job whose row is gone is absent
    assert (rows[held.id].status, rows[held.id].dagster_run_id) == ("processing", "run-1")
    assert (rows[superseded.id].attempt, rows[superseded.id].dagster_run_id) == (superseded.attempt + 1, None)
    assert (rows[finished.id].status, rows[finished.id].dagster_run_id) == ("done", None)
    assert queue.get(held.id).dagster_run_id == "run-1" and queue.get(superseded.id).dagster_run_id is None


def test_the_lease_heartbeats_every_claim_in_one_statement_and_loses_only_the_refused(queue, db_url, org_id):
    first, second, superseded = _claimed(queue, org_id, 3)
    set_columns(db_url, C, superseded.id, attempt=superseded.attempt + 1)
    lease = Lease(queue, 60.0)
    for job in (first, second, superseded):
        lease.add(Claim(job.id, C, job.attempt))
    with counting_statements() as count:
        lease.beat_once()
    assert count.by_label == {"heartbeat_job_claims": 1}
    assert (lease.is_lost(first.id), lease.is_lost(second.id), lease.is_lost(superseded.id)) == (False, False, True)
    with pytest.raises(LostClaim):
        lease.check(superseded.id)
    lease.check(first.id)  # still held


def test_a_lost_claim_stops_the_course_before_its_next_stage(queue, db_url, org_id, tmp_path):
    (job,) = _claimed(queue, org_id)
    worker = _worker(queue, tmp_path)
    work = worker.select_strategy(worker.begin(job))
    set_columns(db_url, C, job.id, attempt=job.attempt + 1)  # another attempt holds the job now
    with pytest.raises(LostClaim):
        worker.build_skeleton(work)
    assert work.skeleton is None and not (tmp_path / f"courses/debug/jobs/{job.id}/skeleton.json").exists()
    # the finished stage's event was written by the refused start; the job row is the other attempt's
    assert _events(queue, job.id) == _expected_events()[:2]
    row = queue.get(job.id)
    assert (row.attempt, row.progress_stage) == (job.attempt + 1, "select_strategy")
    with pytest.raises(LostClaim):  # lost for good: no later stage starts either
        worker.fill(work)


def test_a_spent_budget_is_recorded_after_the_stage_event_it_follows(queue, db_url, org_id, tmp_path):
    """The budget check runs between select_strategy's end and the next stage: its error event must come
    after the success event that waits for the next statement."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        record_org_usage(conn, org_id, 3, 5000, None)
    queue.enqueue_course(new_course("volcanoes", subject="volcanoes"), organization_id=org_id)  # no pack: the model
    (job,) = queue.claim_course_jobs("sensor", limit=1)
    settings = Settings(openai_api_key="k", openai_base_url="http://127.0.0.1:9/v1", text_model="m",
                        org_daily_token_budget=5000)
    worker = CourseWorker(settings, queue, LocalObjectStore(tmp_path), Lease(queue, 60.0))
    work = worker.prepare(worker.begin(job))
    assert isinstance(work.error, JobAborted) and work.error.reason_code == "budget_exhausted"
    assert [(e.seq, e.step, e.status) for e in queue.events(job.id)] == [
        (1, "claimed", "info"), (2, "select_strategy", "success"), (3, "select_strategy", "error")]
    assert queue.events(job.id)[2].meta["reason_code"] == "budget_exhausted"
