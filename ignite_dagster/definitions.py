"""The one Definitions object of the code location (workspace.yaml, ``dg check defs``).

Everything Dagster sits in ``defs/``: partitions.py (the course partitions), courses/ and media/
(assets, jobs, ops, sensors), checks.py (every asset check), maintenance/ (upkeep jobs and schedules),
claim_sensors.py (the sensor builder both queues share) and resources.py.

Resources are bound here, once, for every job and check: ``factory`` (queue, storage, the run's
heartbeat lease) and the in-memory IO manager, which is why every run executes in one process (the
course and media runs hand their work objects from op to op in memory; batching several courses into
one run is what makes runs cheap).
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor, mem_io_manager

from ignite_dagster.config import load_settings
from ignite_dagster.defs.checks import asset_checks
from ignite_dagster.defs.courses.assets import course_media, generate_course_assets
from ignite_dagster.defs.courses.jobs import generate_courses
from ignite_dagster.defs.courses.sensors import build_course_sensors, build_materialization_run_sensors
from ignite_dagster.defs.maintenance.drift import drift_job, drift_schedule
from ignite_dagster.defs.maintenance.jobs import (
    dead_letter_job,
    reconcile_job,
    requeue_job,
    schedules,
    stale_job,
)
from ignite_dagster.defs.media.jobs import generate_media
from ignite_dagster.defs.media.sensors import build_media_sensors
from ignite_dagster.defs.resources import FactoryResource

_settings = load_settings()

defs = Definitions(
    assets=[generate_course_assets, course_media],
    asset_checks=asset_checks,
    jobs=[generate_courses, generate_media, reconcile_job, stale_job, dead_letter_job, requeue_job, drift_job],
    sensors=[
        *build_course_sensors(_settings.sensor_interval_seconds),
        *build_materialization_run_sensors(),
        *build_media_sensors(_settings.sensor_interval_seconds, _settings.media_jobs_per_run),
    ],
    schedules=[*schedules, drift_schedule],
    resources={"factory": FactoryResource(), "io_manager": mem_io_manager},
    executor=in_process_executor,
)
