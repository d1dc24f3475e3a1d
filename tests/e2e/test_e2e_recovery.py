"""Crash recovery and exhausted retries through the real daemon, with the model path on a scripted
loopback provider."""

from __future__ import annotations

import contextlib
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
# The claim-to-start gap no longer needs this margin (the claim sensor keeps claims of queued and starting
# runs alive, and a claim that never ran a stage is released without spending a retry); 30 s stays so the
# run's own start-up on a loaded machine (RUN_START to its first heartbeat) is never mistaken for silence.
# These tests are about what happens after a run really died or really failed; the whole-stack crash is
# tests/e2e/test_e2e_crash.py.
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


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline() if p.status() != psutil.STATUS_ZOMBIE else []
    except psutil.Error:  # exited meanwhile
        return []


def _daemons(root: psutil.Process) -> list[psutil.Process]:
    return [p for p in root.children(recursive=True) if any("dagster-daemon" in part for part in _cmdline(p))]


def _code_servers(daemon: psutil.Process) -> list[psutil.Process]:
    return [p for p in daemon.children(recursive=True)
            if "api" in _cmdline(p) and "grpc" in _cmdline(p) or "code-server" in _cmdline(p)]


def test_ignite_dev_restarts_a_killed_daemon_and_its_code_server_and_keeps_working(db_url, org_id, tmp_path):
    """`ignite dev` as a long-lived dev stack: kill -9 of the daemon (and later of the code server the new
    daemon started) restarts what died instead of ending the stack; courses keep getting done."""
    import subprocess
    import sys

    port = _free_port()
    env = dict(os.environ, DATABASE_URL=db_url, IGNITE_HOME=str(tmp_path), IGNITE_SENSOR_INTERVAL_SECONDS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ignite_dagster.cli.main", "dev", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    queue = JobQueue(db_url)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/server_info") or proc.poll() is not None, 180,
                   "the Dagster UI to answer")
        root = psutil.Process(proc.pid)
        first = wait_until(lambda: _daemons(root), 60, "the daemon")[0]
        first.kill()
        second = wait_until(lambda: [d for d in _daemons(root) if d.pid != first.pid], 60, "a new daemon")[0]
        assert proc.poll() is None
        job = queue.enqueue_course(new_course("addition-after-daemon"), organization_id=org_id).job
        wait_until(lambda: queue.get(job.id).status == "done", 300, "a course done by the restarted daemon")

        servers = wait_until(lambda: _code_servers(second), 60, "the new daemon's code server")
        for server in servers:
            server.kill()
        job = queue.enqueue_course(new_course("addition-after-code-server"), organization_id=org_id).job
        wait_until(lambda: queue.get(job.id).status == "done", 300, "a course done after the code server died")
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out
        assert "daemon exited (code -9); restarted" in out
    finally:
        if proc.poll() is None:  # a failed assertion: let `ignite dev` stop its stack, then make sure
            leftovers = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            for child in leftovers:  # the stack's processes lead their own process groups
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
