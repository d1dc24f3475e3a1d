"""Queue upkeep: reconciliation, stale detection, dead-letter sweep, operator requeue."""


from datetime import timedelta

from dagster import (
    Config,
    DefaultScheduleStatus,
    OpExecutionContext,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from ignite_dagster.defs.resources import code_location_services

MAINTENANCE_TAGS = {"ignite/queue": "maintenance"}


@op(description="Course jobs whose course.json was written by that job are marked done (with metadata); "
    "media jobs whose stored image is attached are marked done.")
def reconcile_course_jobs(context: OpExecutionContext) -> None:
    from ignite_dagster.course_jobs.reconcile import reconcile, reconcile_media

    settings, queue, store = code_location_services()
    quiet = timedelta(seconds=2 * settings.heartbeat_seconds)
    for kind, sweep in (("course", reconcile), ("media", reconcile_media)):
        report = sweep(queue, store, quiet_for=quiet)
        context.log.info(f"{kind}: checked {report.checked} job(s); marked done: {[str(j) for j in report.marked_done]}")


@op(description="processing jobs without a heartbeat for IGNITE_STALE_TIMEOUT_SECONDS become stale.")
def mark_stale_jobs(context: OpExecutionContext) -> None:
    settings, queue, _ = code_location_services()
    rows = queue.mark_stale(timedelta(seconds=settings.stale_timeout_seconds))
    context.log.info(f"marked stale: {[(str(r.job_id), r.job_type) for r in rows]}")


@op(description="failed/stale jobs whose retry budget is spent become dead_letter.")
def dead_letter_sweep(context: OpExecutionContext) -> None:
    _, queue, _ = code_location_services()
    rows = queue.move_to_dead_letter()
    context.log.info(f"dead-lettered: {[(str(r.job_id), r.job_type) for r in rows]}")


class RequeueConfig(Config):
    job_ids: list[str] = Field(description="Ids of failed, stale or dead_letter jobs to send back to pending.")
    table: str = Field(default="ai_course_jobs", description="ai_course_jobs or ai_media_jobs")


@op(description="Operator requeue: failed, stale and dead_letter jobs go back to pending with retry_count 0.")
def requeue(context: OpExecutionContext, config: RequeueConfig) -> None:
    from uuid import UUID

    _, queue, _ = code_location_services()
    for job_id in config.job_ids:
        ok = queue.requeue(UUID(job_id), config.table)
        context.log.info(f"{job_id}: {'requeued' if ok else 'not requeued (not failed/stale/dead_letter)'}")


def _job(name: str, body, description: str):
    @job(name=name, executor_def=in_process_executor, tags=MAINTENANCE_TAGS, description=description)
    def _j():
        body()

    return _j


reconcile_job = _job("reconcile_queue", reconcile_course_jobs, "Drift correction between course.json and job rows.")
stale_job = _job("mark_stale", mark_stale_jobs, "Heartbeat timeout → stale.")
dead_letter_job = _job("dead_letter", dead_letter_sweep, "Retry budget spent → dead_letter.")
requeue_job = _job("requeue_jobs", requeue, "Send jobs back to pending (launchpad: list the job ids).")

schedules = [
    ScheduleDefinition(name="reconcile_every_minute", job=reconcile_job, cron_schedule="* * * * *",
                       default_status=DefaultScheduleStatus.RUNNING),
    ScheduleDefinition(name="mark_stale_every_minute", job=stale_job, cron_schedule="* * * * *",
                       default_status=DefaultScheduleStatus.RUNNING),
    ScheduleDefinition(name="dead_letter_every_5_minutes", job=dead_letter_job, cron_schedule="*/5 * * * *",
                       default_status=DefaultScheduleStatus.RUNNING),
]
