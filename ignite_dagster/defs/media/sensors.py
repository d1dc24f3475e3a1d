"""Media queue → runs, with the course sensor's discipline (defs/courses/sensors.py).

* Claims go through ``get_next_pending_media_job`` one at a time (SKIP LOCKED: any number of daemons).
* Claims are capped by free run capacity, so a claimed job starts soon and never waits unheartbeated
  until it goes stale: media runs in flight vs IGNITE_MAX_CONCURRENT_RUNS (never above the instance's
  run queue limit), and never more runs than the instance's run queue has free slots right now (course
  runs share that queue).
* Several jobs per run (run start-up costs seconds); the run groups them per course.
* Run keys ``media:<first job id>:<attempt>``: a failed run consumes its key forever, and a retry is a
  new attempt, hence a new key. Claims travel to the run in its config and in the ``ignite/jobs`` tag,
  which the failure sensors read to fail claims a dead run still holds (fenced by attempt).
* A tick stops claiming after a time budget far inside Dagster's 60 s sensor limit.
"""


import time
from datetime import timedelta

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from ignite_dagster.defs.courses.assets import courses_partitions
from ignite_dagster.defs.courses.ops import JOBS_TAG, decode_claims, encode_claims
from ignite_dagster.defs.courses.sensors import ACTIVE, TICK_BUDGET_SECONDS, active_runs, run_limit
from ignite_dagster.defs.media.jobs import MEDIA_JOB, generate_media
from ignite_dagster.defs.resources import code_location_services

# Media jobs per run. A course's study-text images are enqueued together, so one run usually takes a
# whole course (one materialization, one completeness check). Candidate for a setting
# (IGNITE_MEDIA_JOBS_PER_RUN) once config.py grows one.
MEDIA_JOBS_PER_RUN = 25


def free_media_runs(instance, configured: int) -> int:
    """Runs this sensor may request now: our cap minus media runs in flight, and no more than the
    instance's run queue can start right now (course and maintenance runs share it)."""
    free = run_limit(instance, configured) - active_runs(instance, MEDIA_JOB)
    try:
        queue_limit = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
    except Exception:  # noqa: BLE001 - instances without a run queue (ephemeral, tests)
        queue_limit = None
    if queue_limit is not None and queue_limit >= 0:
        free = min(free, queue_limit - instance.get_runs_count(RunsFilter(statuses=ACTIVE)))
    return free


def plan_media_runs(queue, *, free_runs: int, per_run: int, worker_id: str, budget_s: float = TICK_BUDGET_SECONDS):
    """Claim up to free_runs × per_run media jobs, one at a time; returns the batches (one per run)."""
    deadline = time.monotonic() + budget_s
    batches = []
    for _ in range(max(0, free_runs)):
        batch = []
        while len(batch) < per_run and time.monotonic() < deadline:
            claimed = queue.claim_media_jobs(worker_id, limit=1)
            if not claimed:
                break
            batch.extend(claimed)
        if not batch:
            break
        batches.append(batch)
        if len(batch) < per_run:
            break  # queue drained
    return batches


def media_run_request(batch) -> RunRequest:
    claims = [(j.id, j.attempt) for j in batch]
    first = batch[0]
    return RunRequest(
        run_key=f"media:{first.id}:{first.attempt}",
        run_config={"ops": {"claimed_media_jobs": {"config": {"jobs": encode_claims(claims)}}}},
        tags={JOBS_TAG: encode_claims(claims), "ignite/courses": ",".join(sorted({j.course_id for j in batch}))[:1000]},
    )


def build_media_jobs_sensor(interval_seconds: int, per_run: int = MEDIA_JOBS_PER_RUN):
    @sensor(
        name="media_jobs_sensor",
        job=generate_media,
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Claims pending media jobs (get_next_pending_media_job) up to free run capacity and launches "
        "generate_media runs; run_key = media:<first job id>:<attempt>.",
    )
    def media_jobs_sensor(context: SensorEvaluationContext):
        settings, queue, _ = code_location_services()
        free = free_media_runs(context.instance, settings.max_concurrent_runs)
        if free <= 0:
            return SkipReason("run capacity full")
        batches = plan_media_runs(queue, free_runs=free, per_run=per_run,
                                  worker_id=f"dagster-sensor:{context.cursor or 'tick'}")
        if not batches:
            return SkipReason("no claimable media jobs")
        course_ids = sorted({j.course_id for b in batches for j in b})
        context.log.info(f"claimed {sum(map(len, batches))} media job(s) into {len(batches)} run(s)")
        return SensorResult(
            run_requests=[media_run_request(b) for b in batches],
            dynamic_partitions_requests=[courses_partitions.build_add_request(course_ids)],
        )

    return media_jobs_sensor


def fail_media_claims(context: RunStatusSensorContext, reason_code: str, message: str) -> None:
    settings, queue, _ = code_location_services()
    run = context.dagster_run
    for job_id, attempt in decode_claims(run.tags.get(JOBS_TAG, "")):
        status = queue.fail(job_id, "ai_media_jobs", attempt, f"Dagster run {run.run_id} {message}", reason_code, True,
                            backoff_base=timedelta(seconds=settings.backoff_base_seconds),
                            backoff_cap=timedelta(seconds=settings.backoff_cap_seconds))
        if status:  # None: the run itself already marked the job (or it was reclaimed): fenced
            context.log.info(f"media job {job_id} attempt {attempt} marked {status} ({reason_code})")


@run_failure_sensor(name="media_run_failure_sensor", monitored_jobs=[generate_media],
                    default_status=DefaultSensorStatus.RUNNING,
                    description="Marks media jobs still held by a failed run as failed (retryable).")
def media_run_failure_sensor(context: RunFailureSensorContext):
    message = context.failure_event.message if context.failure_event else "failed"
    fail_media_claims(context, "run_failed", f"failed: {message}"[:1500])


@run_status_sensor(name="media_run_canceled_sensor", run_status=DagsterRunStatus.CANCELED,
                   monitored_jobs=[generate_media], default_status=DefaultSensorStatus.RUNNING,
                   description="Marks media jobs still held by a canceled run as failed (retryable).")
def media_run_canceled_sensor(context: RunStatusSensorContext):
    fail_media_claims(context, "run_canceled", "was canceled")
