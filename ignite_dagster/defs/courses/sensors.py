"""Queue → runs. The sensor claims through ``get_next_pending_job`` and hands the claims to a run.

Claims are capped by free run capacity (runs of this job not yet finished vs IGNITE_MAX_CONCURRENT_RUNS)
so a claimed job starts soon and never waits unheartbeated until it goes stale; a tick also stops
claiming after a time budget far inside Dagster's 60 s sensor limit. Two daemons are safe: SKIP LOCKED
hands each job to one claimer, and run keys name (job id, attempt), which is unique per claim.
"""


from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from ignite_dagster.defs.claims import JOBS_TAG, encode_claims, fail_run_claims, free_runs, plan_runs
from ignite_dagster.defs.courses.assets import courses_partitions
from ignite_dagster.defs.courses.jobs import GENERATE_JOB, generate_courses
from ignite_dagster.defs.resources import code_location_services


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
        free = free_runs(context.instance, GENERATE_JOB, settings.max_concurrent_runs)
        if free <= 0:
            return SkipReason("run capacity full")
        worker = f"dagster-sensor:{context.cursor or 'tick'}"
        batches = plan_runs(lambda: queue.claim_course_jobs(worker, limit=1), free=free,
                            per_run=settings.courses_per_run)
        if not batches:
            return SkipReason("no claimable course jobs")
        course_ids = sorted({j.course_id for b in batches for j in b})
        context.log.info(f"claimed {sum(map(len, batches))} job(s) into {len(batches)} run(s)")
        return SensorResult(
            run_requests=[course_run_request(b) for b in batches],
            dynamic_partitions_requests=[courses_partitions.build_add_request(course_ids)],
        )

    return course_jobs_sensor


@run_failure_sensor(name="course_run_failure_sensor", monitored_jobs=[generate_courses],
                    default_status=DefaultSensorStatus.RUNNING,
                    description="Marks jobs still held by a failed run as failed (retryable).")
def course_run_failure_sensor(context: RunFailureSensorContext):
    message = context.failure_event.message if context.failure_event else "failed"
    fail_run_claims(context, "ai_course_jobs", "run_failed", f"failed: {message}"[:1500])


@run_status_sensor(name="course_run_canceled_sensor", run_status=DagsterRunStatus.CANCELED,
                   monitored_jobs=[generate_courses], default_status=DefaultSensorStatus.RUNNING,
                   description="Marks jobs still held by a canceled run as failed (retryable).")
def course_run_canceled_sensor(context: RunStatusSensorContext):
    fail_run_claims(context, "ai_course_jobs", "run_canceled", "was canceled")
