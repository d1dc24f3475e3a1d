"""A host crash mid-burst, through the real daemon: kill -9 of the stack's whole process group (daemon,
code server, run processes), then a restart with no manual step.

What must hold afterwards (issue 15): every job done exactly once (one catalog row, its course.json written
by the attempt the row says), no run left STARTED or STARTING, the sensor's full run capacity back, no
retry spent by an attempt that never ran a stage. The recovery figures are printed (run with ``-s``)."""

from __future__ import annotations

import os
import signal
import time

import psutil
import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from ignite_dagster.course_jobs.worker import STAGES
from ignite_dagster.defs.courses.jobs import GENERATE_JOB
from ignite_dagster.defs.run_liveness import free_runs
from ignite_dagster.queue import JobQueue
from tests.support.jobs import assert_done_once, new_course
from tests.support.stack import start_stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.crash, pytest.mark.timeout(1500)]

BURST = 12
PER_RUN = 2
MAX_RUNS = 4
DEAD_AFTER_S = 20  # IGNITE_RUN_DEAD_AFTER_SECONDS: 10 heartbeats of this stack (2 s)
IN_FLIGHT = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def _statuses(queue: JobQueue, ids) -> dict[str, int]:
    out: dict[str, int] = {}
    for job_id in ids:
        status = queue.get(job_id).status
        out[status] = out.get(status, 0) + 1
    return out


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_process_group_crash_mid_burst_recovers_every_job_once_and_full_capacity(db_url, org_id, tmp_path, monkeypatch):
    stack = start_stack(db_url, tmp_path, {
        "IGNITE_COURSES_PER_RUN": str(PER_RUN), "IGNITE_MAX_CONCURRENT_RUNS": str(MAX_RUNS),
        "IGNITE_RUN_DEAD_AFTER_SECONDS": str(DEAD_AFTER_S), "IGNITE_STALE_TIMEOUT_SECONDS": "60",
    })
    monkeypatch.setenv("DATABASE_URL", db_url)
    instance = DagsterInstance.from_config(str(tmp_path / "dagster"))
    try:
        queue = JobQueue(db_url)
        ids = [queue.enqueue_course(new_course(f"crash-{i:02d}"), organization_id=org_id).job.id for i in range(BURST)]

        def mid_burst():
            s = _statuses(queue, ids)
            started = instance.get_runs_count(RunsFilter(job_name=GENERATE_JOB, statuses=[DagsterRunStatus.STARTED]))
            return s.get("done", 0) >= 2 and s.get("processing", 0) >= 2 and started >= 1 and s

        before = wait_until(mid_burst, 240, "a burst in flight (some done, some processing, a run started)",
                            poll=0.2, stack=stack)

        # The crash: SIGKILL to the daemon's process group, which holds the code server and every run process.
        daemon = stack.procs["daemon"]
        pgid = os.getpgid(daemon.pid)
        members = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]
        os.killpg(pgid, signal.SIGKILL)
        crashed_at = time.monotonic()
        daemon.wait(10)
        wait_until(lambda: _group_gone(pgid), 30, "every process of the crashed group to be gone")
        orphaned = [r.run_id for r in instance.get_runs(RunsFilter(job_name=GENERATE_JOB, statuses=IN_FLIGHT))]
        queued = instance.get_runs_count(RunsFilter(job_name=GENERATE_JOB, statuses=[DagsterRunStatus.QUEUED]))
        print(f"\ncrash: killed {len(members)} processes of group {pgid}; jobs {before}; "
              f"{len(orphaned)} run(s) left STARTED/STARTING, {queued} queued")
        assert orphaned, "the crash left no run in flight: nothing was tested"

        # The restart, as `ignite dev` or a supervisor does it: a new daemon, nothing else.
        stack.start_daemon()
        restarted_at = time.monotonic()
        marks: dict[str, float] = {}

        def recovered():
            now = time.monotonic() - restarted_at
            # the orphaned runs were the only slots a crash could leak: once they ended, capacity is whole
            if "runs" not in marks and not any(instance.get_run_by_id(r).status in IN_FLIGHT for r in orphaned):
                marks["runs"] = now
            if "done" not in marks and _statuses(queue, ids) == {"done": BURST}:
                marks["done"] = now
            # then the runs that finished the burst end too, and the sensor's whole capacity is free
            if "done" in marks and "idle" not in marks and free_runs(instance, GENERATE_JOB, MAX_RUNS) == MAX_RUNS \
                    and not instance.get_runs_count(RunsFilter(job_name=GENERATE_JOB, statuses=IN_FLIGHT)):
                marks["idle"] = now
            return {"runs", "done", "idle"} <= marks.keys()

        try:
            wait_until(recovered, 900, "every job done and every orphaned run ended", poll=0.5, stack=stack)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nreached: {marks}; jobs: {_statuses(queue, ids)}") from None
        print(f"recovery after restart: orphaned runs ended (their slots free) in {marks['runs']:.1f} s, "
              f"all {BURST} jobs done in {marks['done']:.1f} s, no run in flight and full capacity ({MAX_RUNS}) in "
              f"{marks['idle']:.1f} s (restart {restarted_at - crashed_at:.1f} s after the crash)")

        for run_id in orphaned:  # how each orphan ended: run monitoring (start timeout) or the claim sensor
            failure = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
            print(f"orphan {run_id[:8]}: {instance.get_run_by_id(run_id).status.value}: "
                  f"{failure[-1].message.splitlines()[0][:110] if failure else '-'}")

        # no run of the queue left in flight, and the sensor's capacity is whole
        assert not instance.get_runs(RunsFilter(job_name=GENERATE_JOB, statuses=IN_FLIGHT))
        assert free_runs(instance, GENERATE_JOB, MAX_RUNS) == MAX_RUNS
        assert marks["runs"] < 120, marks  # capacity back within 2 minutes of the restart

        reconciled = 0
        with psycopg.connect(db_url) as conn:
            for job_id in ids:
                # done once, by the attempt that wrote the file (reconciled ones included: fenced by attempt)
                job = assert_done_once(conn, queue, tmp_path / "storage", job_id)
                # a retry is only ever spent by an attempt that ran a stage
                ran = {e.attempt for e in queue.events(job.id) if e.step in STAGES}
                assert job.retry_count <= len(ran - {job.attempt}), (job.course_id, job.retry_count, ran)
                reconciled += (job.progress_message or "").startswith("marked done by reconciliation")
        failed_runs = instance.get_runs_count(RunsFilter(job_name=GENERATE_JOB, statuses=[DagsterRunStatus.FAILURE]))
        print(f"after recovery: {BURST}/{BURST} done once, {reconciled} by reconciliation, "
              f"{failed_runs} run(s) reported failed, 0 left STARTED/STARTING")
    finally:
        stack.stop()
        instance.dispose()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
