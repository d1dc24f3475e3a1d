"""Crash recovery and exhausted retries through the real daemon, with the model path on a scripted
loopback provider."""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import timedelta

import psutil
import psycopg
import pytest

from ignite_dagster.queue import JobQueue
from tests.support.jobs import new_course
from tests.support.openai_server import CHAT, OpenAICompatServer, ScriptedCourseModel
from tests.support.stack import start_stack, wait_until

pytestmark = pytest.mark.e2e
# Long enough to cover the gap between a sensor's claim and its run's first heartbeat: a run can wait
# ~15 s behind the maintenance runs that start on the minute (measured here), and the mark_stale schedule
# of this stack would otherwise take a healthy claim for dead. Closing that gap is the crash-recovery
# issue's work; these tests are about what happens after a run really died or really failed.
STALE_AFTER_S = 30


class GatedModel:
    """The scripted model, except that the first ``hold`` requests wait on a gate: the run is stuck
    mid-fill, where the test kills it."""

    def __init__(self, hold: int):
        self.model = ScriptedCourseModel()
        self.gate = threading.Event()
        self.held = 0
        self.hold = hold
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            wait = self.held < self.hold
            self.held += wait
        if wait:
            self.gate.wait(120)
        return self.model(request)


@pytest.fixture
def provider():
    with OpenAICompatServer() as server:
        yield server


@pytest.fixture
def stack(db_url, tmp_path, provider):
    s = start_stack(db_url, tmp_path, {
        "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": provider.base_url, "IGNITE_TEXT_MODEL": "test-model",
        "IGNITE_LLM_MAX_RETRIES": "0", "IGNITE_STALE_TIMEOUT_SECONDS": str(STALE_AFTER_S),
    })
    yield s
    s.stop()


def run_process_of(queue: JobQueue, job_id, attempt: int) -> psutil.Process:
    """The OS process working this attempt: the worker records its pid in the 'claimed' event."""
    event = next(e for e in queue.events(job_id) if e.step == "claimed" and e.attempt == attempt)
    proc = psutil.Process(event.meta["pid"])
    assert any("spawn_main" in part for part in proc.cmdline()), proc.cmdline()  # a Dagster run process
    return proc


def test_killed_run_goes_stale_is_retried_and_ends_done_once(stack, provider, db_url, org_id, tmp_path):
    gated = GatedModel(hold=100)
    provider.respond_with(CHAT, gated)
    queue = JobQueue(db_url)
    job = queue.enqueue_course(new_course("addition-crash", strategy="llm", items_per_group=3),
                               organization_id=org_id).job

    wait_until(lambda: queue.get(job.id).progress_stage == "fill" and provider.requests_to(CHAT), 120,
               "the run to reach fill", stack=stack)
    first = queue.get(job.id)
    assert (first.status, first.attempt) == ("processing", 1)
    os.kill(run_process_of(queue, job.id, 1).pid, signal.SIGKILL)
    gated.hold = 0  # the retry gets answers at once
    gated.gate.set()

    # The stale schedule's function (mark_stale_jobs), as the every-minute schedule runs it.
    states = []

    def recovered():
        queue.mark_stale(timedelta(seconds=STALE_AFTER_S))
        j = queue.get(job.id)
        state = (j.status, j.attempt, j.retry_count, j.reason_code, j.next_attempt_at.isoformat())
        if not states or states[-1] != state:
            states.append(state)
        return j.status == "done" and j

    done = wait_until(recovered, 180, f"the job to be retried and done (states: {states})", poll=1, stack=stack)
    assert done.attempt >= 2 and done.retry_count >= 1
    doc = json.loads((tmp_path / "storage/courses/addition-crash/course.json").read_text())
    assert doc["generation"]["jobId"] == str(job.id) and doc["generation"]["attempt"] == done.attempt
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM catalog_updates WHERE course_id = 'addition-crash'").fetchone()[0] == 1
    # the dead attempt's late writes are refused
    assert queue.heartbeat(job.id, "ai_course_jobs", 1) is False
    assert queue.progress(job.id, "ai_course_jobs", 1, "fill", 50) is False
    assert queue.complete(job.id, "ai_course_jobs", 1, {"result_path": "x"}) is False
    assert queue.fail(job.id, "ai_course_jobs", 1, "late", "x", True) is None
    assert queue.get(job.id).status == "done"


def test_validation_failure_is_retried_then_dead_lettered_with_codes(stack, provider, db_url, org_id, tmp_path):
    every_item = {i: "two_options" for i in range(20)}
    provider.respond_with(CHAT, ScriptedCourseModel(faults=every_item, repair_faults=every_item))
    queue = JobQueue(db_url)
    job = queue.enqueue_course(new_course("addition-bad", strategy="llm", items_per_group=2, max_retries=1),
                               organization_id=org_id).job
    seen = set()

    def dead():
        j = queue.get(job.id)
        seen.add(j.status)
        return j.status == "dead_letter" and j

    final = wait_until(dead, 180, "the job to be dead-lettered", stack=stack)
    assert final.attempt == 2 and final.retry_count == 1
    assert final.reason_code == "validation_failed"
    assert "invalid_options_count" in final.error and "(retries: 1/1)" in final.error
    assert not (tmp_path / "storage/courses/addition-bad/course.json").exists()
    issues = json.loads((tmp_path / f"storage/courses/debug/jobs/{job.id}/validation_issues.json").read_text())
    assert issues
    events = queue.events(job.id)
    assert [e.attempt for e in events if e.step == "repair" and e.status == "error"] == [1, 2]
