"""Small helpers for queue tests: real rows through the real client, nothing faked."""

from __future__ import annotations

from uuid import UUID

import psycopg

from ignite_dagster.queue import JobQueue, NewCourseJob, NewMediaJob, TargetRef


def new_course(course_id: str = "addition-3-5", **kw) -> NewCourseJob:
    base = {"subject": "addition", "grade_band": "3-5", "items_per_group": 4, "mode": "options"}
    base.update(kw)
    return NewCourseJob(course_id=course_id, **base)


def enqueue_many(url: str, org: UUID, n: int) -> None:
    """Bulk insert pending jobs (the contract under test is claiming, not inserting one by one)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ai_course_jobs (organization_id, course_id, subject, grade_band) "
            "SELECT %s, 'c-' || g, 'addition', '3-5' FROM generate_series(1, %s) g",
            (org, n),
        )


def new_media(queue: JobQueue, org: UUID, course_id: str = "c1", key: str | None = None):
    return queue.enqueue_media(
        NewMediaJob(course_id=course_id, prompt="a water cycle diagram", target_ref=TargetRef(type="study_text", sectionId="s1")),
        organization_id=org,
        idempotency_key=key,
    )


def set_columns(url: str, table: str, job_id: UUID, **cols) -> None:
    sets = ", ".join(f"{k} = %s" for k in cols)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET {sets} WHERE id = %s", (*cols.values(), job_id))


def assert_done_once(conn: psycopg.Connection, queue: JobQueue, storage_root, job_id: UUID):
    """The job is done exactly once: its course.json written by the attempt the row says (a later attempt
    fenced out every earlier one) and one catalog row. Returns the job row."""
    import json
    from pathlib import Path

    job = queue.get(job_id)
    assert job.status == "done", (job.course_id, job.status)
    doc = json.loads((Path(storage_root) / f"courses/{job.course_id}/course.json").read_text())
    assert (doc["generation"]["jobId"], doc["generation"]["attempt"]) == (str(job.id), job.attempt), job.course_id
    catalog = conn.execute("SELECT count(*) FROM catalog_updates WHERE job_id = %s", (job.id,)).fetchone()[0]
    assert catalog == 1, (job.course_id, catalog)
    return job
