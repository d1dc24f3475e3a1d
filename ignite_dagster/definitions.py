"""The one Definitions object that workspace.yaml loads."""

from __future__ import annotations

from dagster import Definitions

from ignite_dagster.config import load_settings
from ignite_dagster.defs.courses.assets import (
    course_content,
    course_media,
    course_metadata,
    course_schema_valid,
)
from ignite_dagster.defs.courses.jobs import generate_courses
from ignite_dagster.defs.courses.sensors import build_course_sensors
from ignite_dagster.defs.maintenance.jobs import (
    dead_letter_job,
    reconcile_job,
    requeue_job,
    schedules,
    stale_job,
)
from ignite_dagster.defs.media.jobs import generate_media
from ignite_dagster.defs.media.ops import media_complete
from ignite_dagster.defs.media.sensors import build_media_sensors
from ignite_dagster.defs.resources import FactoryResource

_settings = load_settings()

defs = Definitions(
    assets=[course_content, course_metadata, course_media],
    asset_checks=[course_schema_valid, media_complete],
    jobs=[generate_courses, generate_media, reconcile_job, stale_job, dead_letter_job, requeue_job],
    sensors=[
        *build_course_sensors(_settings.sensor_interval_seconds),
        *build_media_sensors(_settings.sensor_interval_seconds, _settings.media_jobs_per_run),
    ],
    schedules=schedules,
    resources={"factory": FactoryResource()},
)
