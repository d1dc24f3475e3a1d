"""The reads a watcher of its own jobs makes (``ignite_dagster/queue/watching.py``, used by ``ignite demo``)."""

from __future__ import annotations

from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.watching import course_jobs_now, pending_course_jobs
from tests.support.jobs import new_course


def test_pending_jobs_of_earlier_sessions_are_found_oldest_first_and_the_own_session_is_left_out(db_url, org_id):
    q = JobQueue(db_url)
    older = q.enqueue_course(new_course("c1"), organization_id=org_id, idempotency_key="demo:t1:c1").job
    q.enqueue_course(new_course("c1"), organization_id=org_id, idempotency_key="demo:t2:c1")
    q.enqueue_course(new_course("c2"), organization_id=org_id, idempotency_key="demo:now:c2")  # this session's own
    q.enqueue_course(new_course("c3"), organization_id=org_id, idempotency_key="other:c3")  # not the demo's
    # "_" in a prefix is a character, not LIKE's any-character
    q.enqueue_course(new_course("c4"), organization_id=org_id, idempotency_key="demoXt1:c4")
    with q.connection() as conn:
        found = pending_course_jobs(conn, org_id, ["c1", "c2", "c3", "c4"], key_prefix="demo:",
                                    except_key_prefix="demo:now:")
        assert {k: v.id for k, v in found.items()} == {"c1": older.id}
        assert pending_course_jobs(conn, org_id, ["c4"], key_prefix="demo_", except_key_prefix="demo_now:") == {}


def test_course_jobs_now_reads_the_current_rows_by_id(db_url, org_id):
    q = JobQueue(db_url)
    a = q.enqueue_course(new_course("c1"), organization_id=org_id).job
    b = q.enqueue_course(new_course("c2"), organization_id=org_id).job
    with q.connection() as conn:
        rows = course_jobs_now(conn, [a.id, b.id])
    assert set(rows) == {a.id, b.id}
    assert rows[a.id].course_id == "c1" and rows[b.id].status == "pending"
