"""Reconciliation of course jobs: course.json written by the job, but the worker died before recording."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

from ignite_dagster.config import Settings
from ignite_dagster.course.model import GenerationInfo
from ignite_dagster.course_jobs.persist import write_course_json
from ignite_dagster.course_jobs.reconcile import reconcile
from ignite_dagster.course_jobs.worker import CourseWorker
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.lease import Lease
from ignite_dagster.storage import LocalObjectStore
from tests.support.jobs import new_course, set_columns


def _generated_but_unrecorded(worker: CourseWorker, queue: JobQueue, store, org_id, course_id: str):
    """Run every stage but persist's database step: course.json is written, the job row still says processing."""
    queue.enqueue_course(new_course(course_id), organization_id=org_id)
    work = worker.begin(queue.claim_course_jobs("w")[0])
    for step in (worker.select_strategy, worker.build_skeleton, worker.fill, worker.validate_normalize, worker.repair):
        work = step(work)
    work.course.generation = GenerationInfo(job_id=str(work.job.id), attempt=work.job.attempt, strategy="deterministic",
                                            created_at="2026-01-01T00:00:00Z")
    write_course_json(store, work.course.to_dict())
    return work.job


def test_reconcile_records_and_finishes_a_job_whose_course_was_written(db_url, org_id, tmp_path):
    queue, store = JobQueue(db_url), LocalObjectStore(tmp_path)
    settings = Settings()
    worker = CourseWorker(settings, queue, store, Lease(queue, 60))
    job = _generated_but_unrecorded(worker, queue, store, org_id, "addition-rec")
    quiet = timedelta(seconds=60)
    assert reconcile(queue, store, quiet_for=quiet).marked_done == []  # heartbeat still fresh: a live worker
    set_columns(db_url, "ai_course_jobs", job.id, last_heartbeat=datetime.now(UTC) - timedelta(minutes=5))

    # another job for the same course, whose file it did not write, stays as it is
    # (failed at attempt 1 by hand: one course has at most one job in processing, so it cannot be claimed now)
    other = queue.enqueue_course(new_course("addition-rec"), organization_id=org_id).job
    set_columns(db_url, "ai_course_jobs", other.id, status="failed", attempt=1, error="boom", reason_code="internal_error")

    report = reconcile(queue, store, quiet_for=quiet)
    assert [j.job_id for j in report.marked_done] == [job.id] and report.checked == 2
    done = queue.get(job.id)
    assert (done.status, done.result_path) == ("done", "courses/addition-rec/course.json")
    assert queue.get(other.id).status == "failed"
    assert reconcile(queue, store, quiet_for=quiet).marked_done == []  # idempotent
    with psycopg.connect(db_url) as conn:
        meta = conn.execute("SELECT latest_job_id, item_count FROM course_metadata WHERE id = 'addition-rec'").fetchone()
        catalog = conn.execute("SELECT count(*) FROM catalog_updates WHERE job_id = %s", (job.id,)).fetchone()[0]
    doc = json.loads((tmp_path / "courses/addition-rec/course.json").read_text())
    assert meta == (job.id, len(doc["items"])) and catalog == 1


def test_maintenance_jobs_run_their_sweeps(db_url, org_id, tmp_path, monkeypatch):
    """The schedules' jobs, executed as Dagster runs: stale detection, dead-letter sweep, reconciliation."""
    from dagster import DagsterInstance

    from ignite_dagster.defs.maintenance.jobs import dead_letter_job, reconcile_job, stale_job
    from tests.support.code_location import code_location

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IGNITE_STORAGE_ROOT", str(tmp_path))
    monkeypatch.setenv("IGNITE_STALE_TIMEOUT_SECONDS", "60")
    queue, store = JobQueue(db_url), LocalObjectStore(tmp_path)
    worker = CourseWorker(Settings(), queue, store, Lease(queue, 60))
    written = _generated_but_unrecorded(worker, queue, store, org_id, "addition-sched")
    queue.enqueue_course(new_course("silent", max_retries=0), organization_id=org_id)
    silent = queue.claim_course_jobs("w")[0]
    assert queue.progress(silent.id, "ai_course_jobs", silent.attempt, "fill", 20)  # a stage ran: stale, not released
    for job_id in (written.id, silent.id):
        set_columns(db_url, "ai_course_jobs", job_id, last_heartbeat=datetime.now(UTC) - timedelta(minutes=5))
    with DagsterInstance.ephemeral() as instance:
        for job in (stale_job, dead_letter_job, reconcile_job):
            assert code_location().resolve_job_def(job.name).execute_in_process(instance=instance).success
    assert queue.get(written.id).status == "done"  # stale, then reconciled from its course.json
    dead = queue.get(silent.id)
    assert dead.status == "dead_letter" and dead.error.endswith("(retries: 0/0)")
