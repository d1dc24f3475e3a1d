"""Drift correction (queue.md "Reconciliation").

A course job that is not done, but whose course.json was written by that job (the ``generation`` block
names it), is finished: metadata and catalog rows are recorded as persist would have, and the job is
marked done. A media job that is not done, but whose image (stored under the job's id) is attached in
course.json, is marked done too. Processing jobs are only touched once their heartbeat has been quiet
for ``quiet_for``: a live worker finishes its own job."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from ignite_dagster.course_jobs.persist import course_path, record_course
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage.base import NotFound, ObjectStore

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    checked: int = 0
    marked_done: list[UUID] = field(default_factory=list)


def _unfinished(queue: JobQueue, table: str, columns: str, quiet_for: timedelta, limit: int) -> list[dict]:
    """failed/stale jobs, and processing ones whose heartbeat has been quiet for ``quiet_for``."""
    with queue.connection() as conn:
        return conn.execute(
            f"SELECT {columns} FROM {table} WHERE status IN ('failed', 'stale') "
            "OR (status = 'processing' AND last_heartbeat < now() - %s) ORDER BY updated_at LIMIT %s",
            (quiet_for, limit),
        ).fetchall()


def reconcile(queue: JobQueue, store: ObjectStore, *, quiet_for: timedelta, limit: int = 200) -> ReconcileReport:
    """Check up to ``limit`` unfinished jobs; a processing job is only touched once its heartbeat has been
    quiet for ``quiet_for`` (a live worker finishes its own job)."""
    report = ReconcileReport()
    for row in _unfinished(queue, "ai_course_jobs", "id, organization_id, course_id, wants_images", quiet_for, limit):
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


def reconcile_media(queue: JobQueue, store: ObjectStore, *, quiet_for: timedelta, limit: int = 200) -> ReconcileReport:
    from ignite_dagster.media.attach import attached_urls, find_stored

    report = ReconcileReport()
    for row in _unfinished(queue, "ai_media_jobs", "id, course_id, target_ref", quiet_for, limit):
        report.checked += 1
        try:
            key = find_stored(store, row["course_id"], row["target_ref"], row["id"])
            if key is None:
                continue
            doc = json.loads(store.get(course_path(row["course_id"])).data)
            url = store.public_url(key)
            if url not in {u for _, u in attached_urls(doc)}:
                continue  # stored but never attached: the retry attaches it (reusing the image)
            with queue.connection() as conn:
                done = conn.execute("SELECT reconcile_media_job_done(%s, %s, %s) AS ok", (row["id"], url, key)).fetchone()
            if done["ok"]:
                report.marked_done.append(row["id"])
        except NotFound:
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable course must not stop the sweep
            log.warning("reconcile: media job %s not checked: %s", row["id"], exc)
    return report
