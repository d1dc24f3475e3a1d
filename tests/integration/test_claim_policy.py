"""One claim per table (sql/010): every claim path writes the same claim columns, and the three decisions
that had drifted between paths hold on each of them.

The paths are the ones the product calls: the sensors' single claim (get_next_pending_job /
get_next_pending_media_job), the batch claims of a run, the fair claim with a per-organization cap, and an
operator's materializations from the UI (one course, one course's media).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ignite_dagster.queue import CourseJob, JobQueue, MediaJob
from tests.support.jobs import new_course, new_media, set_columns

COURSE = "claim-policy"

CoursePath = Callable[[str], list[CourseJob]]
MediaPath = Callable[[str], list[MediaJob]]

COURSE_PATHS: dict[str, CoursePath] = {
    "sensor (get_next_pending_job)": lambda url: JobQueue(url).claim_course_jobs("w", limit=1),
    "batch": lambda url: JobQueue(url).claim_course_jobs("w", limit=10),
    "fair share with a cap": lambda url: JobQueue(url, org_max_in_flight=2).claim_course_jobs("w", limit=1),
    "batch with a cap": lambda url: JobQueue(url, org_max_in_flight=2).claim_course_jobs("w", limit=10),
    "materialization": lambda url: [j for j in [JobQueue(url).claim_course_for_materialization(COURSE, "w")] if j],
}
MEDIA_PATHS: dict[str, MediaPath] = {
    "media sensor (get_next_pending_media_job)": lambda url: JobQueue(url).claim_media_jobs("w", limit=1),
    "media batch": lambda url: JobQueue(url).claim_media_jobs("w", limit=10),
    "course media materialization": lambda url: JobQueue(url).claim_course_media_jobs(COURSE, "w"),
}
OPERATOR_PATHS = {"materialization", "course media materialization"}  # they ignore the retry budget


def _earlier_attempt(db_url: str, table: str, job_id, *, reason_code: str, retry_count: int) -> None:
    """The row as an earlier attempt left it: failed, its run stamped, past its backoff."""
    set_columns(db_url, table, job_id, status="failed", attempt=2, retry_count=retry_count, reason_code=reason_code,
                error="earlier attempt failed", dagster_run_id="run-of-the-earlier-attempt", progress_stage="fill",
                progress_percent=40, progress_message="batch 2/4", completed_at=datetime.now(UTC),
                next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))


def _course_job(db_url: str, org_id, **earlier) -> CourseJob:
    job = JobQueue(db_url).enqueue_course(new_course(COURSE), organization_id=org_id).job
    _earlier_attempt(db_url, "ai_course_jobs", job.id, **earlier)
    return job


def _media_job(db_url: str, org_id, **earlier) -> MediaJob:
    job = new_media(JobQueue(db_url), org_id, course_id=COURSE).job
    _earlier_attempt(db_url, "ai_media_jobs", job.id, **earlier)
    return job


def _assert_claimed(claimed: list, job_id, retry_count: int) -> None:
    (job,) = claimed
    assert job.id == job_id
    assert (job.status, job.attempt, job.worker_id, job.retry_count) == ("processing", 3, "w", retry_count)
    assert (job.progress_stage, job.progress_percent, job.progress_message, job.completed_at) == ("claimed", 0, None, None)
    assert job.started_at is not None and job.last_heartbeat is not None
    # decision: every claim clears the run of the earlier attempt (the new run stamps its own)
    assert job.dagster_run_id is None


ALL_PATHS = {**COURSE_PATHS, **MEDIA_PATHS}


def _job_for(path: str, db_url: str, org_id, **earlier):
    return (_course_job if path in COURSE_PATHS else _media_job)(db_url, org_id, **earlier)


@pytest.mark.parametrize("path", ALL_PATHS, ids=list(ALL_PATHS))
def test_every_claim_path_writes_the_same_claim(db_url, org_id, path):
    job = _job_for(path, db_url, org_id, reason_code="provider_timeout", retry_count=1)
    _assert_claimed(ALL_PATHS[path](db_url), job.id, retry_count=2)


# decision: a job deferred because its organization's daily budget is spent never spends a retry, whichever
# path claims it again (defer_job_budget promises "without spending a retry"); media jobs follow the same rule
@pytest.mark.parametrize("path", ALL_PATHS, ids=list(ALL_PATHS))
def test_a_budget_exhausted_job_spends_no_retry_on_any_claim_path(db_url, org_id, path):
    job = _job_for(path, db_url, org_id, reason_code="budget_exhausted", retry_count=1)
    _assert_claimed(ALL_PATHS[path](db_url), job.id, retry_count=1)


# decision: retry_count never exceeds max_retries. Only the operator paths claim a job whose budget is spent
# (the sensor paths do not choose it: their choice is unchanged); the shared claim is what caps the count
@pytest.mark.parametrize("path", sorted(OPERATOR_PATHS))
def test_an_operator_claim_of_a_job_at_its_retry_budget_keeps_the_count_at_the_budget(db_url, org_id, path):
    job = _job_for(path, db_url, org_id, reason_code="provider_timeout", retry_count=3)
    _assert_claimed(ALL_PATHS[path](db_url), job.id, retry_count=3)


@pytest.mark.parametrize("path", sorted(set(COURSE_PATHS) - OPERATOR_PATHS))
def test_the_sensor_paths_do_not_choose_a_course_job_past_its_retry_budget(db_url, org_id, path):
    _course_job(db_url, org_id, reason_code="provider_timeout", retry_count=3)
    assert COURSE_PATHS[path](db_url) == []


@pytest.mark.parametrize("table", ["ai_course_jobs", "ai_media_jobs"])
def test_the_shared_claim_caps_retry_count_at_max_retries(db_url, org_id, table):
    course = table == "ai_course_jobs"
    job = (_course_job if course else _media_job)(db_url, org_id, reason_code="provider_timeout", retry_count=3)
    fn = "claim_course_job_ids" if course else "claim_media_job_ids"
    with psycopg.connect(db_url, autocommit=True) as conn:
        (retry_count, max_retries) = conn.execute(
            f"SELECT retry_count, max_retries FROM {fn}(ARRAY[%s]::uuid[], 'w')", (job.id,)).fetchone()
    assert (retry_count, max_retries) == (3, 3)


def test_the_claim_set_is_written_once_per_table_and_every_path_calls_it(db_url):
    """A newcomer changing what a claim writes changes one function per table: no other function in the
    schema increments an attempt, and each claim path goes through its table's claim."""
    with psycopg.connect(db_url) as conn:
        src = dict(conn.execute(
            "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'").fetchall())
    writers = {name for name, body in src.items() if "attempt = j.attempt + 1" in body or "attempt + 1," in body}
    assert writers == {"claim_course_job_ids", "claim_media_job_ids"}
    for path in ("claim_course_jobs", "claim_course_for_materialization"):
        assert "claim_course_job_ids(" in src[path], path
    for path in ("claim_media_jobs", "claim_course_media_jobs"):
        assert "claim_media_job_ids(" in src[path], path
    assert "claim_course_jobs(" in src["get_next_pending_job"]
    assert "claim_media_jobs(" in src["get_next_pending_media_job"]
    # removed: it ignored IGNITE_ORG_MAX_COURSES_IN_FLIGHT and nothing in the product called it
    assert "complete_course_job_and_claim_next" not in src
