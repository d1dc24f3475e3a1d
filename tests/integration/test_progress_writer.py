"""The run's progress writer (``queue/progress.py``) against a real database: the latest figure of every
job written in one statement, fenced like every progress write, and nothing lost at close."""

from __future__ import annotations

import threading

import pytest

from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.progress import ProgressWriter
from tests.support.jobs import new_course
from tests.support.statements import counting_statements

C = "ai_course_jobs"


@pytest.fixture
def queue(db_url) -> JobQueue:
    return JobQueue(db_url)


def _in_fill(queue: JobQueue, org_id, n: int):
    """``n`` claimed jobs whose fill stage has started (20 %), as the worker leaves them."""
    for i in range(n):
        queue.enqueue_course(new_course(f"p-{i}"), organization_id=org_id)
    jobs = queue.claim_course_jobs("test", limit=n)
    for job in jobs:
        assert queue.start_stage(job.id, C, job.attempt, "fill", 20, "fill (llm)")
    return jobs


def _progress(queue: JobQueue, job) -> tuple:
    row = queue.get(job.id)
    return row.progress_stage, row.progress_percent, row.progress_message


def test_refinements_of_many_jobs_share_one_statement_and_the_latest_wins(queue, org_id):
    jobs = _in_fill(queue, org_id, 5)
    writer = ProgressWriter(queue)
    entered, gate = threading.Event(), threading.Event()
    original = queue.refine_progress

    def held_first_write(table, updates):  # the database is busy with the first write meanwhile
        entered.set()
        gate.wait(10)
        return original(table, updates)

    queue.refine_progress = held_first_write  # type: ignore[method-assign]
    with counting_statements() as count:
        writer.refine(C, jobs[0].id, jobs[0].attempt, "fill", 25, "items 1/12")
        assert entered.wait(10)
        for step in range(2, 5):  # while it is written, every job moves, some several times
            for job in jobs:
                writer.refine(C, job.id, job.attempt, "fill", 20 + 10 * step, f"items {step}/12")
        gate.set()
        writer.flush()
    writer.close()
    assert count.by_label["refine_job_progress"] == 2, count  # the first, then everyone's latest together
    assert [_progress(queue, j) for j in jobs] == [("fill", 60, "items 4/12")] * 5


def test_a_refinement_never_moves_another_stage_or_attempt_or_goes_back(queue, org_id):
    moved_on, older, stale, fine = _in_fill(queue, org_id, 4)
    assert queue.start_stage(moved_on.id, C, moved_on.attempt, "validate_normalize", 70)
    assert queue.refine_progress(C, [(older.id, older.attempt, "fill", 50, "items 6/12")]) == 1
    written = queue.refine_progress(C, [
        (moved_on.id, moved_on.attempt, "fill", 65, "items 11/12"),   # landed after the worker moved on
        (older.id, older.attempt, "fill", 40, "items 4/12"),          # an older figure than the row's
        (stale.id, stale.attempt - 1, "fill", 45, "items 5/12"),      # measured by an earlier attempt
        (fine.id, fine.attempt, "fill", 45, "items 5/12"),
    ])
    assert written == 1
    assert _progress(queue, moved_on) == ("validate_normalize", 70, None)
    assert _progress(queue, older) == ("fill", 50, "items 6/12")
    assert _progress(queue, stale) == ("fill", 20, "fill (llm)")
    assert _progress(queue, fine) == ("fill", 45, "items 5/12")


def test_close_writes_what_is_pending_and_a_closed_writer_refuses(queue, org_id):
    (job,) = _in_fill(queue, org_id, 1)
    writer = ProgressWriter(queue)
    writer.refine(C, job.id, job.attempt, "fill", 33, "items 2/12")
    writer.close()
    assert _progress(queue, job) == ("fill", 33, "items 2/12")
    with pytest.raises(RuntimeError):
        writer.refine(C, job.id, job.attempt, "fill", 40, "items 3/12")


def test_a_failed_write_is_logged_and_the_next_refinement_is_written(queue, org_id, caplog):
    (job,) = _in_fill(queue, org_id, 1)
    writer = ProgressWriter(queue)
    original, calls = queue.refine_progress, []

    def fails_once(table, updates):
        calls.append(updates)
        if len(calls) == 1:
            raise RuntimeError("connection reset")
        return original(table, updates)

    queue.refine_progress = fails_once  # type: ignore[method-assign]
    writer.refine(C, job.id, job.attempt, "fill", 30, "items 1/12")
    writer.flush()
    assert "progress of 1 ai_course_jobs job(s) not written: connection reset" in caplog.text
    writer.refine(C, job.id, job.attempt, "fill", 35, "items 2/12")
    writer.close()
    assert _progress(queue, job) == ("fill", 35, "items 2/12")
