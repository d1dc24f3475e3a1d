"""Queue upkeep: reconciliation, stale detection, dead-letter sweep, operator requeue.

The ops reach the queue and storage through the ``queue`` and ``storage`` resources (defs/resources.py,
bound in definitions.py), like the course and media ops: a run owns its pool for its lifetime and closes
it at the end.
"""


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

from ignite_dagster.config import load_settings
from ignite_dagster.defs.resources import QueueResource, StorageResource

# max_runtime: a sweep takes seconds once started; one whose process died with its host is failed by run
# monitoring within this bound (the default launcher cannot see dead run processes), so it neither holds a
# maintenance slot for good nor blocks its schedule (which skips while the previous run is in flight).
MAINTENANCE_TAGS = {"ignite/queue": "maintenance", "dagster/max_runtime": "180"}


def held_claims(instance) -> set:
    """(job id, attempt) of every claim a queued, starting or started run carries: a live run finishes
    its own jobs, so the reconciler leaves them alone (a dead run is failed by the claim sensors first)."""
    from dagster import RunsFilter

    from ignite_dagster.defs.run_liveness import ACTIVE
    from ignite_dagster.defs.run_tags import JOBS_TAG, decode_claims

    return {claim for run in instance.get_runs(RunsFilter(statuses=ACTIVE))
            for claim in decode_claims(run.tags.get(JOBS_TAG, ""))}


@op(description="Course jobs whose course.json was written by that job's current attempt are marked done "
    "(with metadata); media jobs whose stored image is attached are marked done. Claims held by live runs "
    "are left to them.")
def reconcile_course_jobs(context: OpExecutionContext, queue: QueueResource, storage: StorageResource) -> None:
    from ignite_dagster.course_jobs.reconcile import reconcile
    from ignite_dagster.media.reconcile import reconcile_media

    quiet = timedelta(seconds=2 * load_settings().heartbeat_seconds)
    held = held_claims(context.instance)
    for kind, sweep in (("course", reconcile), ("media", reconcile_media)):
        report = sweep(queue.queue, storage.store, quiet_for=quiet, held=held)
        context.log.info(f"{kind}: checked {report.checked} job(s); marked done: "
                         f"{[f'{j.course_id}/{j.job_id}#{j.attempt}' for j in report.marked_done]}")
        report_reconciled(context, storage.store, kind, report.marked_done)


def report_reconciled(context: OpExecutionContext, store, kind: str, done: list) -> None:
    """Drift made visible: every job the reconciler completed gets its materialization (``source:
    reconciler``), so the UI shows the course.json or image the run never reported."""
    import json

    from dagster import AssetMaterialization

    from ignite_dagster.defs.courses.events import reconciled_course_events, report_course_events
    from ignite_dagster.defs.courses.keys import COURSE_MEDIA
    from ignite_dagster.storage.keys import course_path

    for j in done:
        if kind == "media":
            report_course_events(context, [AssetMaterialization(
                asset_key=COURSE_MEDIA, partition=j.course_id,
                metadata={"source": "reconciler", "job_id": str(j.job_id), "attempt": j.attempt,
                          "detail": "media job completed by the reconciler (image already attached)"})], j.course_id)
            continue
        try:
            doc = json.loads(store.get(course_path(j.course_id)).data)
        except Exception as exc:  # noqa: BLE001 - the job is done; only its report is missing
            context.log.warning(f"{j.course_id}: reconciled, but course.json unreadable for the report: {exc}")
            continue
        report_course_events(context, reconciled_course_events(
            j.course_id, str(j.job_id), doc, store,
            detail=f"reconciler completed job {j.job_id} attempt {j.attempt} from the stored course.json"), j.course_id)


@op(description="processing jobs without a heartbeat for IGNITE_STALE_TIMEOUT_SECONDS become stale.")
def mark_stale_jobs(context: OpExecutionContext, queue: QueueResource) -> None:
    rows = queue.queue.mark_stale(timedelta(seconds=load_settings().stale_timeout_seconds))
    context.log.info(f"marked stale: {[(str(r.job_id), r.job_type) for r in rows]}")


@op(description="failed/stale jobs whose retry budget is spent become dead_letter.")
def dead_letter_sweep(context: OpExecutionContext, queue: QueueResource) -> None:
    rows = queue.queue.move_to_dead_letter()
    context.log.info(f"dead-lettered: {[(str(r.job_id), r.job_type) for r in rows]}")


class RequeueConfig(Config):
    job_ids: list[str] = Field(description="Ids of failed, stale or dead_letter jobs to send back to pending.")
    table: str = Field(default="ai_course_jobs", description="ai_course_jobs or ai_media_jobs")


@op(description="Operator requeue: failed, stale and dead_letter jobs go back to pending with retry_count 0.")
def requeue(context: OpExecutionContext, config: RequeueConfig, queue: QueueResource) -> None:
    from uuid import UUID

    for job_id in config.job_ids:
        ok = queue.queue.requeue(UUID(job_id), config.table)
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

def _previous_run_finished(job_name: str):
    """Skip a tick while the previous run of the same sweep is still queued or running: on a loaded
    machine a sweep can take longer than its interval, and the runs would pile up in the run queue."""

    def should_execute(context) -> bool:
        from dagster import RunsFilter

        from ignite_dagster.defs.run_liveness import ACTIVE

        return context.instance.get_runs_count(RunsFilter(job_name=job_name, statuses=ACTIVE)) == 0

    return should_execute


schedules = [
    ScheduleDefinition(name=name, job=j, cron_schedule=cron, default_status=DefaultScheduleStatus.RUNNING,
                       should_execute=_previous_run_finished(j.name))
    for name, j, cron in (("reconcile_every_minute", reconcile_job, "* * * * *"),
                          ("mark_stale_every_minute", stale_job, "* * * * *"),
                          ("dead_letter_every_5_minutes", dead_letter_job, "*/5 * * * *"))
]
