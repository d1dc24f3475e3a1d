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
from ignite_dagster.defs.media.jobs import MEDIA_JOB, generate_media
from ignite_dagster.defs.resources import code_location_services

# Media jobs per run (IGNITE_MEDIA_JOBS_PER_RUN). A course's study-text images are enqueued together, so
# one run usually takes a whole course (one materialization, one completeness check).
MEDIA_JOBS_PER_RUN = 25


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
        free = free_runs(context.instance, MEDIA_JOB, settings.max_concurrent_runs)
        if free <= 0:
            return SkipReason("run capacity full")
        worker = f"dagster-sensor:{context.cursor or 'tick'}"
        batches = plan_runs(lambda: queue.claim_media_jobs(worker, limit=1), free=free, per_run=per_run)
        if not batches:
            return SkipReason("no claimable media jobs")
        course_ids = sorted({j.course_id for b in batches for j in b})
        context.log.info(f"claimed {sum(map(len, batches))} media job(s) into {len(batches)} run(s)")
        return SensorResult(
            run_requests=[media_run_request(b) for b in batches],
            dynamic_partitions_requests=[courses_partitions.build_add_request(course_ids)],
        )

    return media_jobs_sensor


@run_failure_sensor(name="media_run_failure_sensor", monitored_jobs=[generate_media],
                    default_status=DefaultSensorStatus.RUNNING,
                    description="Marks media jobs still held by a failed run as failed (retryable).")
def media_run_failure_sensor(context: RunFailureSensorContext):
    message = context.failure_event.message if context.failure_event else "failed"
    fail_run_claims(context, "ai_media_jobs", "run_failed", f"failed: {message}"[:1500])


@run_status_sensor(name="media_run_canceled_sensor", run_status=DagsterRunStatus.CANCELED,
                   monitored_jobs=[generate_media], default_status=DefaultSensorStatus.RUNNING,
                   description="Marks media jobs still held by a canceled run as failed (retryable).")
def media_run_canceled_sensor(context: RunStatusSensorContext):
    fail_run_claims(context, "ai_media_jobs", "run_canceled", "was canceled")
