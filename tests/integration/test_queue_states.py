"""Every transition of shared/design/queue.md, through the SQL functions, on a real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ignite_dagster.queue import JobQueue
from tests.support.jobs import new_course, new_media, set_columns

C = "ai_course_jobs"
ZERO = timedelta(0)


@pytest.fixture
def queue(db_url) -> JobQueue:
    return JobQueue(db_url)


def claim_one(queue: JobQueue, worker: str = "w1"):
    jobs = queue.claim_course_jobs(worker)
    assert len(jobs) == 1
    return jobs[0]


def test_claim_sets_processing_attempt_heartbeat_and_worker(queue, org_id):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue, "run-1")
    assert (job.status, job.attempt, job.retry_count, job.worker_id) == ("processing", 1, 0, "run-1")
    assert job.started_at is not None and job.last_heartbeat is not None
    assert queue.claim_course_jobs("run-2") == []


def test_claim_order_priority_then_oldest(queue, org_id):
    a = queue.enqueue_course(new_course("a"), organization_id=org_id).job
    b = queue.enqueue_course(new_course("b"), organization_id=org_id).job
    c = queue.enqueue_course(new_course("c", priority=10), organization_id=org_id).job
    assert [claim_one(queue).id for _ in range(3)] == [c.id, a.id, b.id]


def test_complete_is_fenced_by_attempt(queue, org_id, db_url):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue)
    assert queue.complete(job.id, C, job.attempt + 1, {"result_path": "x"}) is False
    assert queue.get(job.id).status == "processing"
    assert queue.complete(job.id, C, job.attempt, {"result_path": "courses/x/course.json", "tokens": 12,
                                                  "cost_usd": "0.0012", "summary": {"items": 4}})
    done = queue.get(job.id)
    assert (done.status, done.result_path, done.tokens, done.summary, done.progress_percent) == (
        "done", "courses/x/course.json", 12, {"items": 4}, 100)
    assert done.completed_at is not None
    assert queue.complete(job.id, C, job.attempt, {}) is False  # done is terminal


def test_heartbeat_and_progress_fenced(queue, org_id):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue)
    assert queue.heartbeat(job.id, C, job.attempt)
    assert queue.heartbeat(job.id, C, None)  # attempt optional for heartbeat
    before = queue.get(job.id)
    assert queue.heartbeat(job.id, C, job.attempt - 1) is False
    assert queue.progress(job.id, C, job.attempt - 1, "fill", 50) is False
    assert queue.get(job.id).last_heartbeat == before.last_heartbeat
    assert queue.progress(job.id, C, job.attempt, "fill", 50, "batch 1/4")
    after = queue.get(job.id)
    assert (after.progress_stage, after.progress_percent, after.progress_message) == ("fill", 50, "batch 1/4")


def test_heartbeat_refused_when_not_processing(queue, org_id):
    job = queue.enqueue_course(new_course(), organization_id=org_id).job
    assert queue.heartbeat(job.id, C, None) is False


def test_retryable_failure_backs_off_then_is_claimed_with_retry_count(queue, org_id, db_url):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue)
    t0 = datetime.now(UTC)
    assert queue.fail(job.id, C, job.attempt, "provider 503", "provider_unavailable", True) == "failed"
    failed = queue.get(job.id)
    assert failed.reason_code == "provider_unavailable" and failed.error == "provider 503"
    # equal jitter on base 30 s, retry_count 0: between 15 s and 30 s from now
    delay = (failed.next_attempt_at - t0).total_seconds()
    assert 14 <= delay <= 31, delay
    assert queue.claim_course_jobs("w2") == []  # not before next_attempt_at
    set_columns(db_url, C, job.id, next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
    again = claim_one(queue, "w2")
    assert (again.attempt, again.retry_count, again.status) == (2, 1, "processing")


def test_backoff_grows_exponentially_and_is_capped(queue, org_id, db_url):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue)
    set_columns(db_url, C, job.id, retry_count=2, max_retries=10)
    t0 = datetime.now(UTC)
    queue.fail(job.id, C, job.attempt, "x", "provider_unavailable", True, backoff_base=timedelta(seconds=10),
               backoff_cap=timedelta(hours=1))
    delay = (queue.get(job.id).next_attempt_at - t0).total_seconds()
    assert 19 <= delay <= 41, delay  # 10 s * 2^2 = 40 s, jittered into [20, 40]
    set_columns(db_url, C, job.id, status="processing", retry_count=9)
    t0 = datetime.now(UTC)
    queue.fail(job.id, C, job.attempt, "x", "provider_unavailable", True, backoff_base=timedelta(seconds=10),
               backoff_cap=timedelta(seconds=60))
    delay = (queue.get(job.id).next_attempt_at - t0).total_seconds()
    assert 29 <= delay <= 61, delay  # capped at 60 s


def test_retry_budget_spent_goes_to_dead_letter(queue, org_id):
    queue.enqueue_course(new_course(max_retries=2), organization_id=org_id)
    statuses = []
    for _ in range(3):
        job = claim_one(queue)
        statuses.append(queue.fail(job.id, C, job.attempt, "bad", "provider_unavailable", True,
                                   backoff_base=ZERO, backoff_cap=ZERO))
    assert statuses == ["failed", "failed", "dead_letter"]
    dead = queue.get(job.id)
    assert (dead.retry_count, dead.attempt) == (2, 3)
    assert dead.error == "bad (retries: 2/2)" and dead.completed_at is not None
    assert queue.claim_course_jobs("w") == []


def test_non_retryable_failure_goes_straight_to_dead_letter(queue, org_id):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue)
    assert queue.fail(job.id, C, job.attempt, "refused", "content_refused", False) == "dead_letter"
    assert queue.get(job.id).error == "refused"
    assert queue.claim_course_jobs("w") == []


def test_fail_with_old_attempt_is_refused(queue, org_id):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue)
    assert queue.fail(job.id, C, job.attempt - 1, "late", "x", True) is None
    assert queue.get(job.id).status == "processing"


def test_stale_detection_and_retry(queue, org_id, db_url):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue)
    assert queue.progress(job.id, C, job.attempt, "fill", 20)  # a stage ran (a claim that ran none is released)
    assert queue.mark_stale(timedelta(minutes=5)) == []
    set_columns(db_url, C, job.id, last_heartbeat=datetime.now(UTC) - timedelta(minutes=6))
    rows = queue.mark_stale(timedelta(minutes=5))
    assert [(r.job_id, r.job_type) for r in rows] == [(job.id, C)]
    assert rows[0].stale_duration >= timedelta(minutes=6)
    stale = queue.get(job.id)
    assert (stale.status, stale.error) == ("stale", "Job marked stale due to heartbeat timeout")
    # the dead attempt's late writes are refused
    assert queue.heartbeat(job.id, C, job.attempt) is False
    assert queue.complete(job.id, C, job.attempt, {}) is False
    retry = claim_one(queue)
    assert (retry.attempt, retry.retry_count) == (2, 1)
    assert queue.complete(job.id, C, job.attempt, {}) is False
    assert queue.complete(retry.id, C, retry.attempt, {})


def test_move_to_dead_letter_sweeps_spent_failed_and_stale(queue, org_id, db_url):
    a = queue.enqueue_course(new_course("a"), organization_id=org_id).job
    b = queue.enqueue_course(new_course("b"), organization_id=org_id).job
    c = queue.enqueue_course(new_course("c"), organization_id=org_id).job
    set_columns(db_url, C, a.id, status="failed", retry_count=3, error="boom")
    set_columns(db_url, C, b.id, status="stale", retry_count=3, error="Job marked stale due to heartbeat timeout")
    set_columns(db_url, C, c.id, status="failed", retry_count=1, error="boom")
    moved = {r.job_id for r in queue.move_to_dead_letter()}
    assert moved == {a.id, b.id}
    assert queue.get(a.id).error == "boom (retries: 3/3)"
    assert queue.get(b.id).status == "dead_letter" and queue.get(b.id).completed_at is not None
    assert queue.get(c.id).status == "failed"


@pytest.mark.parametrize("status, ok", [("failed", True), ("dead_letter", True), ("stale", True),
                                        ("pending", False), ("processing", False), ("done", False)])
def test_requeue_only_from_failed_dead_letter_stale(queue, org_id, db_url, status, ok):
    job = queue.enqueue_course(new_course(), organization_id=org_id).job
    set_columns(db_url, C, job.id, status=status, retry_count=3, error="e", started_at=datetime.now(UTC),
                next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
    assert queue.requeue(job.id, C) is ok
    after = queue.get(job.id)
    if ok:
        assert (after.status, after.retry_count, after.error, after.started_at, after.completed_at,
                after.last_heartbeat) == ("pending", 0, None, None, None, None)
        assert after.next_attempt_at <= datetime.now(UTC)
        assert claim_one(queue).id == job.id
    else:
        assert after.status == status and after.error == "e"


def test_job_table_whitelist(queue, org_id, db_url):
    job = queue.enqueue_course(new_course(), organization_id=org_id).job
    with psycopg.connect(db_url, autocommit=True) as conn:
        for fn in ("SELECT update_job_heartbeat(%s, %s)", "SELECT requeue_job(%s, %s)"):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid job table"):
                conn.execute(fn, (job.id, "organizations; DROP TABLE x"))
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT fail_job(%s, 'user_roles', 1, 'e', 'r', true)", (job.id,))
    with pytest.raises(ValueError, match="invalid job table"):
        queue.requeue(job.id, "organizations")


def test_media_queue_lifecycle_and_live_idempotency(queue, org_id):
    first = new_media(queue, org_id, key="img-1")
    replay = new_media(queue, org_id, key="img-1")
    assert replay.replayed and replay.job.id == first.job.id
    job = queue.claim_media_jobs("w")[0]
    assert new_media(queue, org_id, key="img-1").job.id == job.id  # still live while processing
    assert queue.complete(job.id, "ai_media_jobs", job.attempt, {"result_url": "u", "result_path": "p", "metadata": {"bytes": 3}})
    done = queue.get(job.id, "ai_media_jobs")
    assert (done.status, done.result_url, done.metadata) == ("done", "u", {"bytes": 3})
    again = new_media(queue, org_id, key="img-1")  # a finished key may be used again
    assert not again.replayed and again.job.id != job.id


def test_stale_sweep_covers_media_jobs(queue, org_id, db_url):
    new_media(queue, org_id)
    job = queue.claim_media_jobs("w")[0]
    set_columns(db_url, "ai_media_jobs", job.id, last_heartbeat=datetime.now(UTC) - timedelta(minutes=10))
    assert [r.job_type for r in queue.mark_stale()] == ["ai_media_jobs"]


def test_events_are_ordered_and_best_effort(queue, org_id):
    job = queue.enqueue_course(new_course(), organization_id=org_id).job
    queue.event(job.id, C, 1, "select_strategy", "info", 5, "pack addition.g3")
    queue.event(job.id, C, 1, "fill", "success", 40, meta={"items": 4})
    queue.event(job.id, "not_a_table", 1, "x")  # refused by SQL, swallowed: events never fail a job
    events = queue.events(job.id)
    assert [(e.seq, e.step, e.status) for e in events] == [(1, "select_strategy", "info"), (2, "fill", "success")]
    assert events[1].meta == {"items": 4}


def test_idempotent_enqueue_same_key_same_job_other_org_new_job(queue, org_id, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        other = conn.execute("INSERT INTO organizations (name) VALUES ('Other') RETURNING id").fetchone()[0]
    a = queue.enqueue_course(new_course(), organization_id=org_id, idempotency_key="req-1")
    b = queue.enqueue_course(new_course(), organization_id=org_id, idempotency_key="req-1")
    c = queue.enqueue_course(new_course(), organization_id=other, idempotency_key="req-1")
    assert (a.replayed, b.replayed, c.replayed) == (False, True, False)
    assert a.job.id == b.job.id != c.job.id
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM ai_course_jobs").fetchone()[0] == 2


def test_claimable_index_is_used(db_url, org_id):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM ai_course_jobs WHERE status IN ('pending','failed','stale') "
            "ORDER BY priority, created_at LIMIT 1"))
    assert "ai_course_jobs_claimable" in plan


def test_retry_after_is_a_floor_under_the_backoff(queue, org_id):
    queue.enqueue_course(new_course(), organization_id=org_id)
    job = claim_one(queue)
    t0 = datetime.now(UTC)
    queue.fail(job.id, C, job.attempt, "429", "provider_rate_limited", True, backoff_base=timedelta(seconds=1),
               retry_after=timedelta(seconds=120))
    delay = (queue.get(job.id).next_attempt_at - t0).total_seconds()
    assert 119 <= delay <= 121, delay
