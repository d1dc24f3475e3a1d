"""Runs on a real distributed engine: deploy/'s Celery layout end to end (issue 21).

The real daemon and sensors with deploy/celery/run_launcher.yaml appended to dagster.yaml, RabbitMQ as
broker and Redis as result backend on loopback, two Celery worker processes started with the command
line of deploy/celery/ignite-celery-worker.service, and a burst of pack courses. What must hold:

- every course done once (one catalog row, its course.json written by the attempt the row says);
- every run executed in a worker's pool process (the pid of its RUN_START event), none in the daemon's
  process tree, and both workers used;
- after kill -9 of one worker's whole process group mid-run, its runs are failed within
  IGNITE_RUN_DEAD_AFTER_SECONDS of their last sign of life (the task stays STARTED in Redis, so only the
  queue-based dead-run check can tell), their claims go back once, and the other worker finishes every
  course.

Worker slots follow deploy/'s rule: (workers - 1) x slots >= the instance's max_concurrent_runs, so
every launched run finds a free pool process even with one worker gone and none waits out the start
timeout. The figures are printed (run with ``-s``)."""

from __future__ import annotations

import os
import signal
import time

import psutil
import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from ignite_dagster.defs.courses.jobs import GENERATE_JOB
from ignite_dagster.defs.run_liveness import WAITING
from ignite_dagster.defs.run_tags import JOBS_TAG, decode_claims
from ignite_dagster.queue import JobQueue
from tests.support.celery import CeleryIsolation, require_brokers, worker_argv, worker_names_ready
from tests.support.jobs import assert_done_once, new_course
from tests.support.stack import start_stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.celery, pytest.mark.timeout(900)]

BURST = 16
PER_RUN = 2
MAX_RUNS = 4  # IGNITE_MAX_CONCURRENT_RUNS: course runs at once
DEAD_AFTER_S = 20  # IGNITE_RUN_DEAD_AFTER_SECONDS: 10 heartbeats of this stack (2 s)
HEARTBEAT_S = 2
WORKERS = ("worker-a", "worker-b")


@pytest.fixture
def celery_names():
    require_brokers()
    names = CeleryIsolation.new()
    yield names
    names.cleanup()


def _tree(pid: int) -> set[int]:
    try:
        root = psutil.Process(pid)
        return {pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _run_pid(instance, run_id: str) -> int | None:
    """The pid of the process that executed the run: Dagster records it on every event, RUN_START included."""
    starts = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
    return starts[0].dagster_event.pid if starts else None


def test_celery_workers_execute_every_run_and_a_killed_worker_costs_nothing(celery_names, db_url, org_id, tmp_path,
                                                                            monkeypatch):
    stack = start_stack(db_url, tmp_path, {
        **celery_names.env, "IGNITE_COURSES_PER_RUN": str(PER_RUN), "IGNITE_MAX_CONCURRENT_RUNS": str(MAX_RUNS),
        "IGNITE_RUN_DEAD_AFTER_SECONDS": str(DEAD_AFTER_S), "IGNITE_HEARTBEAT_SECONDS": str(HEARTBEAT_S),
        "IGNITE_STALE_TIMEOUT_SECONDS": "120",
    }, instance_blocks=[celery_names.launcher_block()])
    monkeypatch.setenv("DATABASE_URL", db_url)
    for key, value in celery_names.env.items():
        monkeypatch.setenv(key, value)
    instance = DagsterInstance.from_config(str(tmp_path / "dagster"))
    try:
        assert type(instance.run_launcher).__name__ == "CeleryRunLauncher"
        limit = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
        slots = limit // (len(WORKERS) - 1)  # deploy/'s rule: one worker alone holds every run that may start
        config_yaml = celery_names.worker_yaml(tmp_path)
        roots = {name: stack.start(name, worker_argv(name, config_yaml, stack.env, slots)).pid for name in WORKERS}
        wait_until(lambda: worker_names_ready(list(WORKERS)) == set(WORKERS), 120, "both Celery workers to answer a ping",
                   poll=1.0, stack=stack)
        seen: dict[str, set[int]] = {name: set() for name in WORKERS}  # every pid of each worker's tree, ever

        def look() -> None:
            for name, root in roots.items():
                seen[name] |= _tree(root)

        queue = JobQueue(db_url)
        ids = [queue.enqueue_course(new_course(f"celery-{i:02d}"), organization_id=org_id).job.id for i in range(BURST)]
        started_at = time.monotonic()

        def run_on(name: str):
            """A STARTED course run executing on worker ``name`` with a claim still processing."""
            look()
            for run in instance.get_runs(RunsFilter(job_name=GENERATE_JOB, statuses=[DagsterRunStatus.STARTED])):
                if _run_pid(instance, run.run_id) in seen[name] and any(
                        queue.get(job_id).status == "processing" for job_id, _ in decode_claims(run.tags[JOBS_TAG])):
                    return run
            return None

        def mid_burst():
            """Some courses done (both workers had their turn), and a course run in progress on a worker."""
            if sum(queue.get(i).status == "done" for i in ids) < BURST // 4:
                return None
            return run_on(WORKERS[0]) or run_on(WORKERS[1])

        def frozen_with_work_left():
            """The worker of a run seen in progress, stopped (SIGSTOP: at once, every process of it) while
            that run still holds a claim; resumed and looked for again if its courses finished between the
            look and the stop (a pack course takes milliseconds: a plain look-then-kill often killed an
            idle worker)."""
            run = mid_burst()
            if run is None:
                return None
            name = next(n for n in WORKERS if _run_pid(instance, run.run_id) in seen[n])
            group = os.getpgid(roots[name])
            os.killpg(group, signal.SIGSTOP)
            if any(queue.get(job_id).status == "processing" for job_id, _ in decode_claims(run.tags[JOBS_TAG])):
                return run, name, group
            os.killpg(group, signal.SIGCONT)
            return None

        # Mid-run: the first worker seen executing a course run with work left is the one that dies.
        victim_run, victim, pgid = wait_until(frozen_with_work_left, 300,
                                              "a course run in progress on a worker, a quarter of the burst done",
                                              poll=0.1, stack=stack)
        survivor = next(n for n in WORKERS if n != victim)
        look()
        os.killpg(pgid, signal.SIGKILL)
        killed_at = time.monotonic()
        stack.procs.pop(victim).wait(10)  # not restarted: the survivor has to finish the burst
        wait_until(lambda: not any(_alive(p) for p in seen[victim]), 30, f"every process of {victim} to be gone")
        dead_runs = {r.run_id: [c for c in decode_claims(r.tags[JOBS_TAG]) if queue.get(c[0]).status == "processing"]
                     for r in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
                     if _run_pid(instance, r.run_id) in seen[victim]}
        done_before = sum(queue.get(i).status == "done" for i in ids)
        print(f"\ncelery: {slots} slots per worker (instance max_concurrent_runs {limit}); killed {victim} "
              f"(group {pgid}, {len(seen[victim])} processes) {killed_at - started_at:.1f} s into the burst, "
              f"{done_before}/{BURST} done, {len(dead_runs)} run(s) of it STARTED holding "
              f"{sum(map(len, dead_runs.values()))} claim(s)")
        assert dead_runs and any(dead_runs.values()), "the kill hit no run in progress: nothing was tested"

        failed_after: dict[str, float] = {}

        def recovered() -> bool:
            look()
            for run_id in dead_runs:
                if run_id not in failed_after and instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE:
                    failed_after[run_id] = time.monotonic() - killed_at
            return len(failed_after) == len(dead_runs) and all(queue.get(i).status == "done" for i in ids)

        try:
            wait_until(recovered, 600, "every course done and the killed worker's runs failed", poll=0.5, stack=stack)
        except AssertionError as exc:
            states = {}
            for i in ids:
                states[queue.get(i).status] = states.get(queue.get(i).status, 0) + 1
            raise AssertionError(f"{exc}\nfailed so far: {failed_after}; jobs: {states}") from None
        all_done_s = time.monotonic() - killed_at

        # The killed worker's runs: failed by the dead-run check within its limit of their last sign of life
        # (the kill), allowing one heartbeat interval and a couple of sensor ticks.
        for run_id, after in failed_after.items():
            failure = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)[-1].message
            assert "presumed dead" in failure, failure
            assert after <= DEAD_AFTER_S + HEARTBEAT_S + 10, (run_id, after)
        # Their claims went back once: the attempt the dead run held was followed by exactly one more, done.
        for claims in dead_runs.values():
            for job_id, attempt in claims:
                job = queue.get(job_id)
                assert (job.status, job.attempt) == ("done", attempt + 1), (job.course_id, job.status, job.attempt, attempt)

        # Every run (course and upkeep runs alike) executed in a worker's pool process, never in the daemon's tree.
        daemon_tree = _tree(stack.procs["daemon"].pid)
        per_worker = {name: 0 for name in WORKERS}
        unstarted, died_starting = 0, []
        for run in instance.get_runs():
            pid = _run_pid(instance, run.run_id)
            if pid is None:
                if _task_worker(instance, run) == victim:  # its task had begun on the victim when it died
                    died_starting.append(run.run_id)
                    continue
                unstarted += 1  # an upkeep run still queued or starting at the end
                assert run.status in WAITING, (run.job_name, run.status)
                continue
            owner = [name for name in WORKERS if pid in seen[name]]
            assert owner and pid not in daemon_tree and pid not in roots.values(), (run.job_name, pid, seen)
            per_worker[owner[0]] += 1
        assert all(per_worker.values()), per_worker
        # the slots cover the run queue: no launched run waited out the start timeout for a free worker
        timed_out = [r.run_id for r in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
                     if r.run_id not in died_starting and _start_timed_out(instance, r.run_id)]
        assert not timed_out, timed_out
        course_runs = instance.get_runs_count(RunsFilter(job_name=GENERATE_JOB))

        with psycopg.connect(db_url) as conn:
            for job_id in ids:
                assert_done_once(conn, queue, tmp_path / "storage", job_id)
        print(f"celery: {BURST}/{BURST} courses done once in {course_runs} course runs; runs per worker "
              f"{per_worker} (all {sum(per_worker.values())} started runs in worker pool processes, "
              f"{unstarted} upkeep run(s) still waiting, none failed waiting for a slot, "
              f"{len(died_starting)} died with {victim} before starting); {victim}'s {len(dead_runs)} run(s) failed "
              f"{', '.join(f'{s:.1f} s' for s in sorted(failed_after.values()))} after the kill "
              f"(IGNITE_RUN_DEAD_AFTER_SECONDS={DEAD_AFTER_S}); {survivor} finished the burst {all_done_s:.1f} s after "
              f"the kill, {time.monotonic() - started_at:.1f} s after the enqueue")
    finally:
        stack.stop()
        instance.dispose()


def _start_timed_out(instance, run_id: str) -> bool:
    """Run monitoring failed the run for not starting within start_timeout_seconds."""
    return any("seconds to start" in (e.message or "")
               for e in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE))


def _task_worker(instance, run) -> str | None:
    """The worker whose pool process began the run's Celery task, as Redis records it (track_started)."""
    task_id = run.tags.get("dagster-celery/task_id")
    if not task_id:
        return None
    result = instance.run_launcher.celery.AsyncResult(task_id)
    info = result.info if result.state == "STARTED" else None
    return info.get("hostname", "").split("@", 1)[0] if isinstance(info, dict) else None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
