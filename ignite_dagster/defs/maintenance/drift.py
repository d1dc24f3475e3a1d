"""Drift made visible: course.json files in storage that the Dagster UI shows no materialization for.

A course.json can exist without a materialization when it was written behind the pipeline's back (a
restore, a migration, a run that died after writing and before reporting, which the reconciler then
completed). The reconcile op reports the jobs it completes; this sweep catches the rest by comparing
storage with the instance's materialized partitions, and records a ``course_content`` materialization
with ``source: reconciler`` for each, so the UI and storage agree.
"""

import json
import re

from dagster import (
    DefaultScheduleStatus,
    OpExecutionContext,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)

from ignite_dagster.defs.courses.events import reconciled_course_events, report_course_events
from ignite_dagster.defs.courses.keys import COURSE_CONTENT
from ignite_dagster.defs.maintenance.jobs import MAINTENANCE_TAGS
from ignite_dagster.defs.resources import StorageResource
from ignite_dagster.storage.keys import COURSES_BUCKET, course_path

_COURSE_JSON = re.compile(rf"{re.escape(COURSES_BUCKET)}/([a-z0-9-]{{1,64}})/course\.json")


def stored_course_ids(store) -> set[str]:
    """Every course id with a course.json in storage."""
    out = set()
    for key in store.list(f"{COURSES_BUCKET}/"):
        m = _COURSE_JSON.fullmatch(key)
        if m:
            out.add(m.group(1))
    return out


@op(description="Record a course_content materialization (source: reconciler) for every course.json in storage "
    "that has none in Dagster.")
def report_unmaterialized_courses(context: OpExecutionContext, storage: StorageResource) -> None:
    store = storage.store
    materialized = context.instance.get_materialized_partitions(COURSE_CONTENT)
    missing = sorted(stored_course_ids(store) - set(materialized))
    for course_id in missing:
        try:
            doc = json.loads(store.get(course_path(course_id)).data)
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the sweep
            context.log.warning(f"{course_id}: course.json unreadable: {exc}")
            continue
        job_id = str((doc.get("generation") or {}).get("jobId") or "")
        report_course_events(context, reconciled_course_events(
            course_id, job_id, doc, store, detail="course.json found in storage with no materialization"),
            course_id)
    context.log.info(f"course.json without a materialization: {len(missing)} {missing[:20]}")


@job(name="report_course_drift", executor_def=in_process_executor, tags=MAINTENANCE_TAGS,
     description="Storage vs the Dagster UI: record materializations (source: reconciler) for courses stored "
     "without one.")
def drift_job():
    report_unmaterialized_courses()


drift_schedule = ScheduleDefinition(name="report_course_drift_every_10_minutes", job=drift_job,
                                    cron_schedule="*/10 * * * *", default_status=DefaultScheduleStatus.RUNNING)
