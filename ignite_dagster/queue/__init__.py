"""The Postgres job queues: typed client over the SQL functions of sql/002_queue_functions.sql."""

from ignite_dagster.queue.client import JobQueue, idempotent_job_id
from ignite_dagster.queue.models import (
    JOB_TABLES,
    CourseJob,
    EnqueueResult,
    JobEvent,
    MediaJob,
    NewCourseJob,
    NewMediaJob,
    TargetRef,
)

__all__ = [
    "JOB_TABLES",
    "CourseJob",
    "EnqueueResult",
    "JobEvent",
    "JobQueue",
    "MediaJob",
    "NewCourseJob",
    "NewMediaJob",
    "TargetRef",
    "idempotent_job_id",
]
