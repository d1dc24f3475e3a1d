"""The Postgres job queues: a typed client over the queue's SQL functions (``sql/``: the
state machine in 002, fair share in 007, claim liveness in 008, materialization in 009, the claims in 010).
The retry policy of both queues and of the model call is ``retry.py``: which reasons are retried per job
kind, the backoff, the free-release limit, ``decide``."""

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
