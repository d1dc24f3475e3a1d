"""Drift correction for media jobs (queue.md "Reconciliation").

A media job that is not done, but whose image (stored under the job's id) is attached in course.json,
is marked done. Processing jobs are only touched once their heartbeat has been quiet for
``quiet_for`` and no live run holds their claim: a live worker finishes its own job. ``course_jobs.reconcile`` does the same for course
jobs and shares ``ReconcileReport``; both read their candidates with ``JobQueue.unfinished_jobs``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from ignite_dagster.media.attach import attached_urls, find_stored
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage.base import NotFound, ObjectStore
from ignite_dagster.storage.keys import course_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconciledJob:
    """A job reconciliation marked done: enough for the Dagster shell to report its materialization."""

    job_id: UUID
    course_id: str
    attempt: int


@dataclass
class ReconcileReport:
    checked: int = 0
    marked_done: list[ReconciledJob] = field(default_factory=list)


def reconcile_media(queue: JobQueue, store: ObjectStore, *, quiet_for: timedelta, limit: int = 200,
                    held: set[tuple[UUID, int]] | frozenset = frozenset()) -> ReconcileReport:
    """Check up to ``limit`` unfinished media jobs; mark done those whose stored image is attached.

    A claim ``held`` by a live run (queued, starting or started) is left to that run; the completion is
    fenced by the attempt read here, so a claim taken in between is untouched."""
    report = ReconcileReport()
    for row in queue.unfinished_jobs("ai_media_jobs", quiet_for, limit):
        report.checked += 1
        if (row["id"], row["attempt"]) in held:
            continue
        try:
            key = find_stored(store, row["course_id"], row["target_ref"], row["id"])
            if key is None:
                continue
            doc = json.loads(store.get(course_path(row["course_id"])).data)
            url = store.public_url(key)
            if url not in {u for _, u in attached_urls(doc)}:
                continue  # stored but never attached: the retry attaches it (reusing the image)
            if queue.reconcile_media_job_done(row["id"], row["attempt"], url, key):
                report.marked_done.append(ReconciledJob(row["id"], row["course_id"], row["attempt"]))
        except NotFound:
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable course must not stop the sweep
            log.warning("reconcile: media job %s not checked: %s", row["id"], exc)
    return report
