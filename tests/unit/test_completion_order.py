"""A run's courses are reported in the order they are done, not the order they were planned
(``CourseWorker.in_completion_order``, which the finish_courses step and the course asset follow)."""

from __future__ import annotations

import concurrent.futures
import threading

from ignite_dagster.config import Settings
from ignite_dagster.course_jobs.worker import CourseWork, CourseWorker
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.lease import Lease
from ignite_dagster.storage.local import LocalObjectStore


def _worker(tmp_path) -> CourseWorker:
    queue = JobQueue("postgresql://never-connected")  # collecting finished courses says nothing to the database
    return CourseWorker(Settings(), queue, LocalObjectStore(tmp_path), Lease(queue, 60.0))


def test_courses_come_back_as_they_finish_and_one_without_a_finish_pending_at_once(tmp_path):
    slow_may_finish = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow, fast, failed = CourseWork(job="slow", request=None), CourseWork(job="fast", request=None), \
            CourseWork(job="failed", request=None, error=RuntimeError("no pack"))
        slow.pending = pool.submit(lambda: slow_may_finish.wait(10) and slow)
        fast.pending = pool.submit(lambda: fast)
        fast.pending.result()  # done before collecting starts
        order = []
        for work, outcome in _worker(tmp_path).in_completion_order([slow, fast, failed]):
            order.append((work.job, outcome if isinstance(outcome, CourseWork) else str(outcome)))
            slow_may_finish.set()  # only once the others are reported
    assert order == [("fast", fast), ("failed", "no pack"), ("slow", slow)]


def test_a_failed_background_finish_is_returned_with_its_course_not_raised(tmp_path):
    def fails():
        raise RuntimeError("fill failed")

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        work = CourseWork(job="c", request=None)
        work.pending = pool.submit(fails)
        ((got, outcome),) = list(_worker(tmp_path).in_completion_order([work]))
    assert got is work and isinstance(outcome, RuntimeError) and str(outcome) == "fill failed"
