"""The claim sensor and the run-failure and run-canceled sensors of a queue, built alike for the course
and media queues (``courses/sensors.py``, ``media/sensors.py``).

A claim tick first looks after the runs its queue launched (``run_liveness.py``: waiting claims kept
alive, dead runs failed, capacity counted after that), then claims one job at a time through the
queue's get_next_pending_* function into batches of runs, inside a time budget far below Dagster's 60 s
sensor limit. Run keys name (first job id, attempt), unique per claim, so two daemons are safe.
"""

import time
from collections.abc import Callable
from datetime import timedelta

from dagster import DagsterRunStatus, RunRequest, RunStatusSensorContext

from ignite_dagster.config import load_settings
from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import QueueResource
from ignite_dagster.defs.run_liveness import (
    fail_dead_runs,
    fail_run_claims,
    free_runs,
    keep_waiting_claims_alive,
)
from ignite_dagster.defs.run_tags import JOBS_TAG, course_run_tags, encode_claims

TICK_BUDGET_SECONDS = 15.0

# Dagster's sensor daemon starts an evaluation loop every 5 s (MIN_INTERVAL_LOOP_TIME in
# dagster/_daemon/sensor.py) and skips a sensor whose last tick *started* less than its
# minimum_interval_seconds ago. A sensor declared "every 5 s" is therefore skipped whenever its previous
# tick started a hair late, and ticks every 10 s instead (measured: claims 1.2-7.5 s after the enqueue,
# ticks 9.2 s apart). The slack below keeps every loop that is due.
DAEMON_LOOP_SECONDS = 5
LOOP_SLACK_SECONDS = 3


def minimum_interval(every_seconds: int) -> int:
    """The ``minimum_interval_seconds`` that makes the daemon tick a sensor every ``every_seconds``,
    rounded up to a whole number of its 5 s loops (so IGNITE_SENSOR_INTERVAL_SECONDS=5 is a tick on
    every loop, 10 one on every second loop, and anything below 5 one on every loop: the daemon goes no
    faster)."""
    loops = max(1, -(-every_seconds // DAEMON_LOOP_SECONDS))
    return loops * DAEMON_LOOP_SECONDS - LOOP_SLACK_SECONDS


def plan_runs(claim_one: Callable[[], list], *, free: int, per_run: int,
              budget_s: float = TICK_BUDGET_SECONDS) -> list[list]:
    """Claim up to free × per_run jobs with ``claim_one`` (one job per call); returns one batch per run."""
    deadline = time.monotonic() + budget_s
    batches: list[list] = []
    for _ in range(max(0, free)):
        batch: list = []
        while len(batch) < per_run and time.monotonic() < deadline:
            claimed = claim_one()
            if not claimed:
                break
            batch.extend(claimed)
        if not batch:
            break
        batches.append(batch)
        if len(batch) < per_run:
            break  # queue drained
    return batches


def claims_run_request(kind: str, op_name: str, batch: list) -> RunRequest:
    """One run for a batch of claims; run_key ``<kind>:<first job id>:<attempt>`` is unique per claim (a
    failed run consumes its key forever; a retry is a new attempt, hence a new key)."""
    claims = encode_claims([(j.id, j.attempt) for j in batch])
    first = batch[0]
    return RunRequest(
        run_key=f"{kind}:{first.id}:{first.attempt}",
        run_config={"ops": {op_name: {"config": {"jobs": claims}}}},
        tags={JOBS_TAG: claims, **course_run_tags(batch)},
    )


def build_queue_sensors(*, kind: str, table: str, job, op_name: str, claim: Callable, per_run: Callable[[object], int],
                        interval_seconds: int) -> tuple:
    """The claim sensor, the run-failure sensor and the run-canceled sensor of one queue.

    ``claim(queue, worker_id)`` claims one job (the queue's get_next_pending_* function);
    ``per_run(settings)`` is the batch size."""
    from dagster import (
        DefaultSensorStatus,
        RunFailureSensorContext,
        SensorEvaluationContext,
        SensorResult,
        SkipReason,
        run_failure_sensor,
        run_status_sensor,
        sensor,
    )

    @sensor(name=f"{kind}_jobs_sensor", job=job, minimum_interval_seconds=minimum_interval(interval_seconds),
            default_status=DefaultSensorStatus.RUNNING,
            description=f"Claims pending {table} jobs one at a time up to free run capacity and launches "
            f"{job.name} runs; run_key = {kind}:<first job id>:<attempt>.")
    def claim_sensor(context: SensorEvaluationContext, queue: QueueResource):
        settings, jobs = load_settings(), queue.queue
        keep_waiting_claims_alive(context.instance, job.name, table, jobs)
        dead_after = timedelta(seconds=settings.run_dead_after_seconds)
        fail_dead_runs(context.instance, job.name, table, jobs, dead_after, context.log)
        if kind == "course":  # runs that claim jobs themselves (asset materializations), judged once, here
            fail_dead_runs(context.instance, None, None, jobs, dead_after, context.log,
                           exclude_queues=("course", "media"))
        free = free_runs(context.instance, job.name, settings.max_concurrent_runs)
        if free <= 0:
            return SkipReason("run capacity full")
        worker = f"dagster-sensor:{context.cursor or 'tick'}"
        batches = plan_runs(lambda: claim(jobs, worker), free=free, per_run=per_run(settings))
        if not batches:
            return SkipReason(f"no claimable {kind} jobs")
        context.log.info(f"claimed {sum(map(len, batches))} {kind} job(s) into {len(batches)} run(s)")
        return SensorResult(
            run_requests=[claims_run_request(kind, op_name, b) for b in batches],
            dynamic_partitions_requests=[courses_partitions.build_add_request(
                sorted({j.course_id for b in batches for j in b}))],
        )

    @run_failure_sensor(name=f"{kind}_run_failure_sensor", monitored_jobs=[job],
                        default_status=DefaultSensorStatus.RUNNING,
                        description=f"Hands back {table} jobs still held by a failed run (dead runs included): back to "
                        "pending when no stage ran, else failed (retryable).")
    def failure_sensor(context: RunFailureSensorContext, queue: QueueResource):
        message = context.failure_event.message if context.failure_event else "failed"
        fail_run_claims(context, queue.queue, table, "run_failed", f"failed: {message}"[:1500])

    @run_status_sensor(name=f"{kind}_run_canceled_sensor", run_status=DagsterRunStatus.CANCELED,
                       monitored_jobs=[job], default_status=DefaultSensorStatus.RUNNING,
                       description=f"Marks {table} jobs still held by a canceled run as failed (retryable).")
    def canceled_sensor(context: RunStatusSensorContext, queue: QueueResource):
        fail_run_claims(context, queue.queue, table, "run_canceled", "was canceled")

    return claim_sensor, failure_sensor, canceled_sensor
