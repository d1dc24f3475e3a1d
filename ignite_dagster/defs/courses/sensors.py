"""Queue → runs. The sensor claims through ``get_next_pending_job`` and hands the claims to a run.

Claims are capped by free run capacity (runs of this job not yet finished vs IGNITE_MAX_CONCURRENT_RUNS)
so a claimed job starts soon and never waits unheartbeated until it goes stale; a tick also stops
claiming after a time budget far inside Dagster's 60 s sensor limit. Two daemons are safe: SKIP LOCKED
hands each job to one claimer, and run keys name (job id, attempt), which is unique per claim.
"""

from dagster import Definitions, definitions

from ignite_dagster.config import load_settings
from ignite_dagster.defs.courses.jobs import generate_courses
from ignite_dagster.defs.queue_sensors import build_queue_sensors


def build_course_sensors(interval_seconds: int) -> tuple:
    """course_jobs_sensor, course_run_failure_sensor, course_run_canceled_sensor."""
    return build_queue_sensors(
        kind="course", table="ai_course_jobs", job=generate_courses, op_name="claimed_course_jobs",
        claim=lambda queue, worker: queue.claim_course_jobs(worker, limit=1),
        per_run=lambda settings: settings.courses_per_run, interval_seconds=interval_seconds,
    )


def build_course_jobs_sensor(interval_seconds: int):
    return build_course_sensors(interval_seconds)[0]


def _is_materialization_with_claims(run) -> bool:
    from ignite_dagster.defs.run_tags import JOBS_TAG, QUEUE_TAG

    return bool(run.tags.get(JOBS_TAG)) and run.tags.get(QUEUE_TAG) is None


def build_materialization_run_sensors() -> tuple:
    """Claims of course materializations (the UI's Materialize, backfills: ``__ASSET_JOB`` runs that claim
    their jobs themselves) go back to the queue when their run fails, dies or is canceled, exactly like a
    sensor run's: the queue sensors' own run-status sensors only watch their jobs."""
    from dagster import (
        DagsterRunStatus,
        DefaultSensorStatus,
        RunFailureSensorContext,
        RunStatusSensorContext,
        run_failure_sensor,
        run_status_sensor,
    )

    from ignite_dagster.defs.resources import QueueResource
    from ignite_dagster.defs.run_liveness import fail_run_claims

    @run_failure_sensor(name="course_materialization_failure_sensor", default_status=DefaultSensorStatus.RUNNING,
                        description="Hands back course jobs still held by a failed (or dead) course materialization run.")
    def materialization_failure_sensor(context: RunFailureSensorContext, queue: QueueResource):
        if _is_materialization_with_claims(context.dagster_run):
            message = context.failure_event.message if context.failure_event else "failed"
            fail_run_claims(context, queue.queue, "ai_course_jobs", "run_failed", f"failed: {message}"[:1500])

    @run_status_sensor(name="course_materialization_canceled_sensor", run_status=DagsterRunStatus.CANCELED,
                       default_status=DefaultSensorStatus.RUNNING,
                       description="Hands back course jobs still held by a canceled course materialization run.")
    def materialization_canceled_sensor(context: RunStatusSensorContext, queue: QueueResource):
        if _is_materialization_with_claims(context.dagster_run):
            fail_run_claims(context, queue.queue, "ai_course_jobs", "run_canceled", "was canceled")

    return materialization_failure_sensor, materialization_canceled_sensor


@definitions
def course_sensors() -> Definitions:
    """The course queue's sensors, built when the code location loads (the tick interval is a setting)."""
    return Definitions(sensors=[*build_course_sensors(load_settings().sensor_interval_seconds),
                                *build_materialization_run_sensors()])
