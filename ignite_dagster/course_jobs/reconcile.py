"""Drift correction for course jobs (queue.md "Reconciliation"); media jobs: ``media.reconcile``.

A course job that is not done, but whose course.json was written by that job's current attempt (the
``generation`` block names the job and the attempt), is finished: metadata and catalog rows are recorded as
persist would have, and the job is marked done with the telemetry the file carries (strategy, provider,
model, counts, and the time from claim to file as processing duration).

Fenced twice, because a job can be claimed again while an older attempt's file sits in storage: the file
must name the attempt the row holds (``reconcile_course_job_done`` checks it again in the same
transaction), and that attempt's run must be gone. ``held`` is the set of (job id, attempt) claimed by runs
the orchestrator reports queued, starting or started (the Dagster shell computes it); a claim in it belongs
to a live run, which finishes its own job."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from functools import partial
from uuid import UUID

from ignite_dagster.course_jobs.persist import record_course
from ignite_dagster.media.reconcile import ReconciledJob, ReconcileReport
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.job_rows import reconcile_course_job_done
from ignite_dagster.storage.base import NotFound, ObjectStore
from ignite_dagster.storage.keys import course_path

log = logging.getLogger(__name__)


def _telemetry(doc: dict, generation: dict) -> dict:
    """What the file says about the attempt that wrote it. The dead worker's usage died with it (the job's
    tokens and cost keep what earlier attempts recorded); the summary says the job was reconciled."""
    return {
        "provider": generation.get("provider"),
        "model": generation.get("model"),
        "summary": {
            "strategy": generation.get("strategy"), "packId": generation.get("packId"),
            "promptVersion": generation.get("promptVersion"),
            "groups": len(doc.get("groups") or []), "levels": len(doc.get("levels") or []),
            "items": len(doc.get("items") or []), "studyTexts": len(doc.get("studyTexts") or []),
            "reconciled": True,
        },
    }


def _written_at(generation: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(str(generation.get("createdAt")).replace("Z", "+00:00"))
    except ValueError:
        return None


def reconcile(queue: JobQueue, store: ObjectStore, *, quiet_for: timedelta, limit: int = 200,
              held: set[tuple[UUID, int]] | frozenset = frozenset()) -> ReconcileReport:
    """Check up to ``limit`` unfinished jobs. A processing job is only touched once its heartbeat has been
    quiet for ``quiet_for`` and its claim is not ``held`` by a live run (a live worker finishes its own job)."""
    report = ReconcileReport()
    for row in queue.unfinished_jobs("ai_course_jobs", quiet_for, limit):
        report.checked += 1
        if (row["id"], row["attempt"]) in held:
            continue
        try:
            doc = json.loads(store.get(course_path(row["course_id"])).data)
        except NotFound:
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the sweep
            log.warning("reconcile: cannot read course %s: %s", row["course_id"], exc)
            continue
        generation = doc.get("generation") or {}
        if generation.get("jobId") != str(row["id"]) or generation.get("attempt") != row["attempt"]:
            continue  # written by another job, or by an older attempt of this one: the retry rewrites it
        complete = partial(reconcile_course_job_done, job_id=row["id"], attempt=row["attempt"],
                           result_path=course_path(row["course_id"]), result=_telemetry(doc, generation),
                           written_at=_written_at(generation))
        try:
            with queue.connection() as conn:
                record_course(conn, job_id=row["id"], organization_id=row["organization_id"], course_doc=doc,
                              complete=complete, wants_images=row["wants_images"])
            report.marked_done.append(ReconciledJob(row["id"], row["course_id"], row["attempt"]))
        except Exception as exc:  # noqa: BLE001
            log.warning("reconcile: job %s not marked done: %s", row["id"], exc)
    return report
