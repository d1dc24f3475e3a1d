"""Fair share in the claim functions (sql/007): organizations interleave, a per-organization cap holds,
one course is never claimed twice at once, and budget_exhausted waits for the next UTC day without
spending a retry. Real Postgres; concurrency through separate connections (separate backends)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ignite_dagster.queue import JobQueue


def new_org(url: str, name: str) -> uuid.UUID:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("INSERT INTO organizations (name) VALUES (%s) RETURNING id", (name,)).fetchone()[0]


def add_jobs(url: str, org: uuid.UUID, prefix: str, n: int, *, priority: int = 100, course: str | None = None) -> None:
    """n pending jobs, created in order (created_at strictly increasing)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            conn.execute(
                "INSERT INTO ai_course_jobs (organization_id, course_id, subject, grade_band, priority, created_at) "
                "VALUES (%s, %s, 'addition', '3-5', %s, clock_timestamp())",
                (org, course or f"{prefix}-{i}", priority),
            )


@pytest.fixture
def orgs(db_url):
    return new_org(db_url, "A"), new_org(db_url, "B")


def test_a_late_small_organization_is_not_queued_behind_a_large_burst(db_url, orgs):
    a, b = orgs
    add_jobs(db_url, a, "a", 20)
    add_jobs(db_url, b, "b", 2)  # enqueued after all of A's
    queue = JobQueue(db_url)
    first = queue.claim_course_jobs("w", limit=4)
    assert [j.course_id for j in first] == ["a-0", "b-0", "a-1", "b-1"]


def test_the_organization_with_fewer_jobs_in_flight_goes_first(db_url, orgs):
    a, b = orgs
    add_jobs(db_url, a, "a", 5)
    queue = JobQueue(db_url)
    assert [j.course_id for j in queue.claim_course_jobs("w", limit=2)] == ["a-0", "a-1"]
    add_jobs(db_url, b, "b", 3)
    # A has two in flight, B none: B's jobs come first although A's are older, until B catches up
    assert [j.course_id for j in queue.claim_course_jobs("w", limit=3)] == ["b-0", "b-1", "a-2"]
    assert [j.course_id for j in queue.claim_course_jobs("w")] == ["b-2"]


def test_priority_still_orders_jobs_within_an_organization(db_url, orgs):
    a, _ = orgs
    add_jobs(db_url, a, "low", 2, priority=200)
    add_jobs(db_url, a, "high", 1, priority=10)
    assert [j.course_id for j in JobQueue(db_url).claim_course_jobs("w", limit=3)] == ["high-0", "low-0", "low-1"]


def test_the_per_organization_cap_on_courses_in_flight(db_url, orgs):
    a, b = orgs
    add_jobs(db_url, a, "a", 5)
    add_jobs(db_url, b, "b", 1)
    queue = JobQueue(db_url, org_max_in_flight=2)
    assert sorted(j.course_id for j in queue.claim_course_jobs("w", limit=10)) == ["a-0", "a-1", "b-0"]
    assert queue.claim_course_jobs("w", limit=10) == []  # A at its cap, B has nothing left
    done = queue.list(organization_id=a, status="processing")[0]
    assert queue.complete(done.id, "ai_course_jobs", done.attempt, {})
    assert [j.course_id for j in queue.claim_course_jobs("w", limit=10)] == ["a-2"]


def test_a_course_with_a_job_in_processing_is_never_claimed_again(db_url, orgs):
    a, _ = orgs
    add_jobs(db_url, a, "x", 2, course="same-course")
    add_jobs(db_url, a, "other", 1)
    queue = JobQueue(db_url)
    claimed = queue.claim_course_jobs("w", limit=3)
    assert [j.course_id for j in claimed] == ["same-course", "other-0"]
    assert queue.claim_course_jobs("w", limit=3) == []
    job = claimed[0]
    assert queue.complete(job.id, "ai_course_jobs", job.attempt, {})
    assert [j.course_id for j in queue.claim_course_jobs("w")] == ["same-course"]


def test_concurrent_claimers_never_hold_one_course_twice(db_url, orgs):
    """Eight backends claim at once over 40 jobs of 10 courses: at most one job per course in
    processing, and nothing is claimed twice."""
    a, b = orgs
    for n in range(10):
        add_jobs(db_url, a if n % 2 else b, "c", 4, course=f"course-{n}")
    start = threading.Barrier(8)
    claimed: list = []
    lock = threading.Lock()

    def claimer() -> None:
        queue = JobQueue(db_url)
        start.wait()
        for _ in range(5):
            jobs = queue.claim_course_jobs("w", limit=2)
            with lock:
                claimed.extend(jobs)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({j.id for j in claimed}) == len(claimed)
    assert sorted(j.course_id for j in claimed) == [f"course-{n}" for n in range(10)]
    with psycopg.connect(db_url) as conn:
        per_course = conn.execute(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM ai_course_jobs WHERE status = 'processing' "
            "GROUP BY course_id) c").fetchone()[0]
    assert per_course == 1


def test_budget_exhausted_waits_for_the_next_day_without_spending_a_retry(db_url, orgs):
    a, _ = orgs
    add_jobs(db_url, a, "a", 1)
    queue = JobQueue(db_url)
    (job,) = queue.claim_course_jobs("w")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE ai_course_jobs SET retry_count = max_retries WHERE id = %s", (job.id,))
    tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    assert queue.defer_budget_exhausted(job.id, job.attempt, "daily budget spent", tomorrow) == "failed"
    row = queue.get(job.id)
    assert (row.status, row.reason_code, row.next_attempt_at) == ("failed", "budget_exhausted", tomorrow)
    assert queue.claim_course_jobs("w") == []  # not before the budget renews
    assert queue.move_to_dead_letter() == []  # a spent budget is not a spent retry budget
    with psycopg.connect(db_url, autocommit=True) as conn:  # the day turns
        conn.execute("UPDATE ai_course_jobs SET next_attempt_at = now() WHERE id = %s", (job.id,))
    (again,) = queue.claim_course_jobs("w")
    assert (again.id, again.attempt) == (job.id, job.attempt + 1)
    assert again.retry_count == row.retry_count  # claimed again although its retries were spent, none counted


def test_a_stale_defer_is_fenced(db_url, orgs):
    a, _ = orgs
    add_jobs(db_url, a, "a", 1)
    queue = JobQueue(db_url)
    (job,) = queue.claim_course_jobs("w")
    assert queue.defer_budget_exhausted(job.id, job.attempt + 1, "x", datetime.now(UTC)) is None
