"""Queue → runs. The sensor claims through ``get_next_pending_job`` and hands the claims to a run.

Claims are capped by free run capacity (runs of this job not yet finished vs IGNITE_MAX_CONCURRENT_RUNS)
so a claimed job starts soon and never waits unheartbeated until it goes stale; a tick also stops
claiming after a time budget far inside Dagster's 60 s sensor limit. Two daemons are safe: SKIP LOCKED
hands each job to one claimer, and run keys name (job id, attempt), which is unique per claim.
"""

from ignite_dagster.defs.claim_sensors import build_queue_sensors
from ignite_dagster.defs.courses.jobs import generate_courses


def build_course_sensors(interval_seconds: int) -> tuple:
    """course_jobs_sensor, course_run_failure_sensor, course_run_canceled_sensor."""
    return build_queue_sensors(
        kind="course", table="ai_course_jobs", job=generate_courses, op_name="claimed_course_jobs",
        claim=lambda queue, worker: queue.claim_course_jobs(worker, limit=1),
        per_run=lambda settings: settings.courses_per_run, interval_seconds=interval_seconds,
    )


def build_course_jobs_sensor(interval_seconds: int):
    return build_course_sensors(interval_seconds)[0]
