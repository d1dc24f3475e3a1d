"""Drift correction for course jobs (queue.md "Reconciliation"); media jobs: ``media.reconcile``.

A course job that is not done, but whose course.json was written by that job (the ``generation`` block
names it), is finished: metadata and catalog rows are recorded as persist would have, and the job is
marked done. Processing jobs are only touched once their heartbeat has been quiet for ``quiet_for``: a
live worker finishes its own job."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from ignite_dagster.course_jobs.persist import record_course
from ignite_dagster.media.reconcile import ReconcileReport, unfinished_jobs
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage.base import NotFound, ObjectStore
from ignite_dagster.storage.keys import course_path

log = logging.getLogger(__name__)


def reconcile(queue: JobQueue, store: ObjectStore, *, quiet_for: timedelta, limit: int = 200) -> ReconcileReport:
    """Check up to ``limit`` unfinished jobs; a processing job is only touched once its heartbeat has been
    quiet for ``quiet_for`` (a live worker finishes its own job)."""
    report = ReconcileReport()
    for row in unfinished_jobs(queue, "ai_course_jobs", "id, organization_id, course_id, wants_images", quiet_for, limit):
        report.checked += 1
        try:
            doc = json.loads(store.get(course_path(row["course_id"])).data)
        except NotFound:
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the sweep
            log.warning("reconcile: cannot read course %s: %s", row["course_id"], exc)
            continue
        if (doc.get("generation") or {}).get("jobId") != str(row["id"]):
            continue
        try:
            with queue.connection() as conn:
                record_course(
                    conn, job_id=row["id"], organization_id=row["organization_id"], course_doc=doc,
                    complete_sql=("SELECT reconcile_course_job_done(%s, %s)", (row["id"], course_path(row["course_id"]))),
                    wants_images=row["wants_images"],
                )
            report.marked_done.append(row["id"])
        except Exception as exc:  # noqa: BLE001
            log.warning("reconcile: job %s not marked done: %s", row["id"], exc)
    return report
