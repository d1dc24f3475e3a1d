"""What the course and media sensors share: run capacity, claiming into batches, failing dead runs' claims.

Capacity: a sensor requests no more runs than its own cap (IGNITE_MAX_CONCURRENT_RUNS minus its job's
runs in flight) and than the instance's run queue can start now (all runs share it), so a claimed job
starts soon and never waits unheartbeated until it goes stale. Claims happen one at a time through the
queue's get_next_pending_* function, inside a time budget far below Dagster's 60 s sensor limit.
"""

import time
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

from dagster import DagsterRunStatus, RunRequest, RunsFilter, RunStatusSensorContext

from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import code_location_services

ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
TICK_BUDGET_SECONDS = 15.0
JOBS_TAG = "ignite/jobs"


def encode_claims(claims: list[tuple[UUID | str, int]]) -> str:
    return ",".join(f"{job_id}:{attempt}" for job_id, attempt in claims)


def decode_claims(value: str) -> list[tuple[UUID, int]]:
    out = []
    for part in filter(None, (value or "").split(",")):
        job_id, attempt = part.rsplit(":", 1)
        out.append((UUID(job_id), int(attempt)))
    return out


def _queue_limit(instance) -> int | None:
    try:
        limit = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
    except Exception:  # noqa: BLE001 - instances without a run queue (ephemeral, tests)
        return None
    return limit if limit is not None and limit >= 0 else None


def active_runs(instance, job_name: str | None = None) -> int:
    return instance.get_runs_count(RunsFilter(job_name=job_name, statuses=ACTIVE) if job_name
                                   else RunsFilter(statuses=ACTIVE))


def free_runs(instance, job_name: str, configured: int) -> int:
    """Runs a sensor may request now for ``job_name``."""
    free = configured - active_runs(instance, job_name)
    limit = _queue_limit(instance)
    if limit is not None:
        free = min(free, limit - active_runs(instance))
    return free


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


def fail_run_claims(context: RunStatusSensorContext, table: str, reason_code: str, message: str) -> None:
    """Mark the jobs a dead run still holds as failed (retryable). Fenced: jobs the run already marked,
    or that were reclaimed since, are untouched."""
    settings, queue, _ = code_location_services()
    run = context.dagster_run
    for job_id, attempt in decode_claims(run.tags.get(JOBS_TAG, "")):
        status = queue.fail(job_id, table, attempt, f"Dagster run {run.run_id} {message}", reason_code, True,
                            backoff_base=timedelta(seconds=settings.backoff_base_seconds),
                            backoff_cap=timedelta(seconds=settings.backoff_cap_seconds))
        if status:
            context.log.info(f"{table} job {job_id} attempt {attempt} marked {status} ({reason_code})")


def claims_run_request(kind: str, op_name: str, batch: list) -> RunRequest:
    """One run for a batch of claims; run_key ``<kind>:<first job id>:<attempt>`` is unique per claim (a
    failed run consumes its key forever; a retry is a new attempt, hence a new key)."""
    claims = encode_claims([(j.id, j.attempt) for j in batch])
    first = batch[0]
    return RunRequest(
        run_key=f"{kind}:{first.id}:{first.attempt}",
        run_config={"ops": {op_name: {"config": {"jobs": claims}}}},
        tags={JOBS_TAG: claims, "ignite/courses": ",".join(sorted({j.course_id for j in batch}))[:1000]},
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

    @sensor(name=f"{kind}_jobs_sensor", job=job, minimum_interval_seconds=interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description=f"Claims pending {table} jobs one at a time up to free run capacity and launches "
            f"{job.name} runs; run_key = {kind}:<first job id>:<attempt>.")
    def claim_sensor(context: SensorEvaluationContext):
        settings, queue, _ = code_location_services()
        free = free_runs(context.instance, job.name, settings.max_concurrent_runs)
        if free <= 0:
            return SkipReason("run capacity full")
        worker = f"dagster-sensor:{context.cursor or 'tick'}"
        batches = plan_runs(lambda: claim(queue, worker), free=free, per_run=per_run(settings))
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
                        description=f"Marks {table} jobs still held by a failed run as failed (retryable).")
    def failure_sensor(context: RunFailureSensorContext):
        message = context.failure_event.message if context.failure_event else "failed"
        fail_run_claims(context, table, "run_failed", f"failed: {message}"[:1500])

    @run_status_sensor(name=f"{kind}_run_canceled_sensor", run_status=DagsterRunStatus.CANCELED,
                       monitored_jobs=[job], default_status=DefaultSensorStatus.RUNNING,
                       description=f"Marks {table} jobs still held by a canceled run as failed (retryable).")
    def canceled_sensor(context: RunStatusSensorContext):
        fail_run_claims(context, table, "run_canceled", "was canceled")

    return claim_sensor, failure_sensor, canceled_sensor
