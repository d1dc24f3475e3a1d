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

from dagster import Definitions, definitions

from ignite_dagster.config import load_settings
from ignite_dagster.defs.media.jobs import generate_media
from ignite_dagster.defs.queue_sensors import build_queue_sensors

# Default media jobs per run (IGNITE_MEDIA_JOBS_PER_RUN). A course's study-text images are enqueued
# together, so one run usually takes a whole course (one materialization, one completeness check).
MEDIA_JOBS_PER_RUN = 25


def build_media_sensors(interval_seconds: int, per_run: int = MEDIA_JOBS_PER_RUN) -> tuple:
    """media_jobs_sensor, media_run_failure_sensor, media_run_canceled_sensor."""
    return build_queue_sensors(
        kind="media", table="ai_media_jobs", job=generate_media, op_name="claimed_media_jobs",
        claim=lambda queue, worker: queue.claim_media_jobs(worker, limit=1),
        per_run=lambda settings: per_run, interval_seconds=interval_seconds,
    )


def build_media_jobs_sensor(interval_seconds: int, per_run: int = MEDIA_JOBS_PER_RUN):
    return build_media_sensors(interval_seconds, per_run)[0]


@definitions
def media_sensors() -> Definitions:
    """The media queue's sensors, built when the code location loads (interval and batch size are settings)."""
    settings = load_settings()
    return Definitions(sensors=list(build_media_sensors(settings.sensor_interval_seconds, settings.media_jobs_per_run)))
