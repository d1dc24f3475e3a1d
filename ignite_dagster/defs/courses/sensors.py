"""Queue → runs. The sensor claims through ``get_next_pending_job`` and hands the claims to a run.

Claims are capped by free run capacity (runs of this job not yet finished vs IGNITE_MAX_CONCURRENT_RUNS)
so a claimed job starts soon and never waits unheartbeated until it goes stale; a tick also stops
claiming after a time budget far inside Dagster's 60 s sensor limit. Two daemons are safe: SKIP LOCKED
hands each job to one claimer, and run keys name (job id, attempt), which is unique per claim.
"""


import time

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
from ignite_dagster.defs.courses.jobs import GENERATE_JOB, generate_courses
from ignite_dagster.defs.courses.ops import JOBS_TAG, decode_claims, encode_claims
from ignite_dagster.defs.resources import code_location_services

ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
TICK_BUDGET_SECONDS = 15.0


def run_limit(instance, configured: int) -> int:
    """The course-run cap: our setting, never above the instance's own run queue limit."""
    try:
        queue_cfg = instance.get_concurrency_config().run_queue_config
    except Exception:  # noqa: BLE001 - instances without a run queue (ephemeral, tests)
        queue_cfg = None
    limit = getattr(queue_cfg, "max_concurrent_runs", None)
    return configured if limit is None or limit < 0 else min(configured, limit)


def active_runs(instance, job_name: str) -> int:
    return instance.get_runs_count(RunsFilter(job_name=job_name, statuses=ACTIVE))


def plan_course_runs(queue, *, free_runs: int, per_run: int, worker_id: str, budget_s: float = TICK_BUDGET_SECONDS):
    """Claim up to free_runs × per_run jobs, one at a time through get_next_pending_job; returns batches."""
    deadline = time.monotonic() + budget_s
    batches = []
    for _ in range(max(0, free_runs)):
        batch = []
        while len(batch) < per_run and time.monotonic() < deadline:
            claimed = queue.claim_course_jobs(worker_id, limit=1)
            if not claimed:
                break
            batch.extend(claimed)
        if not batch:
            break
        batches.append(batch)
        if len(batch) < per_run:
            break  # queue drained
    return batches


def course_run_request(batch) -> RunRequest:
    claims = [(j.id, j.attempt) for j in batch]
    first = batch[0]
    return RunRequest(
        run_key=f"course:{first.id}:{first.attempt}",
        run_config={"ops": {"claimed_course_jobs": {"config": {"jobs": encode_claims(claims)}}}},
        tags={JOBS_TAG: encode_claims(claims), "ignite/courses": ",".join(j.course_id for j in batch)[:1000]},
    )


def build_course_jobs_sensor(interval_seconds: int):
    @sensor(
        name="course_jobs_sensor",
        job=generate_courses,
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Claims pending course jobs (get_next_pending_job) up to free run capacity and launches "
        "generate_courses runs; run_key = <first job id>:<attempt>.",
    )
    def course_jobs_sensor(context: SensorEvaluationContext):
        settings, queue, _ = code_location_services()
        limit = run_limit(context.instance, settings.max_concurrent_runs)
        free = limit - active_runs(context.instance, GENERATE_JOB)
        if free <= 0:
            return SkipReason(f"run capacity full ({limit} active runs)")
        batches = plan_course_runs(queue, free_runs=free, per_run=settings.courses_per_run,
                                   worker_id=f"dagster-sensor:{context.cursor or 'tick'}")
        if not batches:
            return SkipReason("no claimable course jobs")
        course_ids = sorted({j.course_id for b in batches for j in b})
        context.log.info(f"claimed {sum(map(len, batches))} job(s) into {len(batches)} run(s)")
        return SensorResult(
            run_requests=[course_run_request(b) for b in batches],
            dynamic_partitions_requests=[courses_partitions.build_add_request(course_ids)],
        )

    return course_jobs_sensor


def _fail_claims(context: RunStatusSensorContext, reason_code: str, message: str) -> None:
    settings, queue, _ = code_location_services()
    from datetime import timedelta

    run = context.dagster_run
    for job_id, attempt in decode_claims(run.tags.get(JOBS_TAG, "")):
        status = queue.fail(job_id, "ai_course_jobs", attempt, f"Dagster run {run.run_id} {message}", reason_code, True,
                            backoff_base=timedelta(seconds=settings.backoff_base_seconds),
                            backoff_cap=timedelta(seconds=settings.backoff_cap_seconds))
        if status:  # None: the job was already marked by the run itself (fenced)
            context.log.info(f"job {job_id} attempt {attempt} marked {status} ({reason_code})")


@run_failure_sensor(name="course_run_failure_sensor", monitored_jobs=[generate_courses],
                    default_status=DefaultSensorStatus.RUNNING,
                    description="Marks jobs still held by a failed run as failed (retryable).")
def course_run_failure_sensor(context: RunFailureSensorContext):
    message = context.failure_event.message if context.failure_event else "failed"
    _fail_claims(context, "run_failed", f"failed: {message}"[:1500])


@run_status_sensor(name="course_run_canceled_sensor", run_status=DagsterRunStatus.CANCELED,
                   monitored_jobs=[generate_courses], default_status=DefaultSensorStatus.RUNNING,
                   description="Marks jobs still held by a canceled run as failed (retryable).")
def course_run_canceled_sensor(context: RunStatusSensorContext):
    _fail_claims(context, "run_canceled", "was canceled")
