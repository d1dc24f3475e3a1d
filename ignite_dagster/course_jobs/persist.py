"""Persisting a generated course: course.json (CAS, media kept), metadata, catalog, media jobs, completion.

Order matters for "never a half course" and "never a duplicate catalog row":
1. ownership check: a course id belongs to one organization for good;
2. course.json written by compare-and-swap, re-checking the claim before every attempt, merging media
   URLs already attached (a regeneration never loses an image);
3. one database transaction: complete the job (fenced by attempt) first, then metadata upsert, the
   catalog row (unique per job) and the media jobs. A refused completion rolls the rest back.
If the process dies between 2 and 3, reconciliation finds course.json written by this job and finishes
step 3 (``record_course``).

The statements are the catalog's (``catalog/recording.py``) and the queue's (``queue/job_rows.py``); this
module only orders them, so the order above is readable in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from ignite_dagster.catalog.recording import (
    CourseMetadata,
    add_catalog_update,
    course_owner,
    upsert_course_metadata,
)
from ignite_dagster.course.tags import catalog_tags
from ignite_dagster.media.markers import merge_attached_media
from ignite_dagster.media.targets import enqueue_planned, plan_images, request_specs
from ignite_dagster.queue.errors import LostClaim
from ignite_dagster.queue.job_rows import request_columns
from ignite_dagster.storage.base import ObjectStore
from ignite_dagster.storage.cas import update_json
from ignite_dagster.storage.json_codec import dump_compact, load
from ignite_dagster.storage.keys import course_path


class CourseOwnedElsewhere(RuntimeError):
    reason_code = "course_id_conflict"


def write_course_json(
    store: ObjectStore, course_doc: dict[str, Any], *, guard: Callable[[], None] | None = None
) -> tuple[dict[str, Any], str, int]:
    """CAS-write course.json; ``guard`` (the claim check) runs before every attempt."""

    def mutate(current: dict | None) -> dict:
        if guard is not None:
            guard()
        return merge_attached_media(load(dump_compact(course_doc)), current)  # a fresh copy per attempt

    return update_json(store, course_path(course_doc["id"]), mutate)


def check_course_owner(conn: psycopg.Connection, course_id: str, organization_id: UUID) -> None:
    owner = course_owner(conn, course_id)
    if owner is not None and owner != organization_id:
        raise CourseOwnedElsewhere(f"course id {course_id!r} belongs to another organization")


@dataclass
class RecordResult:
    catalog_action: str | None
    media_jobs: list[UUID] = field(default_factory=list)


# Marks the job done on the transaction's connection; False: the claim was lost (nothing is kept).
Completion = Callable[[psycopg.Connection], bool]


def record_course(
    conn: psycopg.Connection,
    *,
    job_id: UUID,
    organization_id: UUID,
    course_doc: dict[str, Any],
    complete: Completion | None,
    wants_images: bool,
) -> RecordResult:
    """Metadata upsert + one catalog row per job + media jobs (+ the fenced completion) in one transaction.

    ``complete`` marks the job done (``job_rows.complete_job`` for a worker, ``reconcile_course_job_done``
    for the reconciler) on this transaction's connection; when it returns false the claim was lost and
    nothing is kept. The catalog row's tags and visibility and the item images come from the job's own
    row (the request as accepted), so the worker and the reconciler record the same thing; a job row that
    is gone records the course with its document's facets only.
    """
    course_id = course_doc["id"]
    with conn.transaction():
        if complete is not None and not complete(conn):
            raise LostClaim(f"job {job_id}: completion refused (claim lost)")
        asked = request_columns(conn, job_id)
        tags = catalog_tags(subject=asked.get("subject") or course_doc.get("subject"),
                            grade_band=course_doc.get("gradeBand") or asked.get("grade_band"),
                            locale=course_doc.get("locale") or asked.get("locale"),
                            strategy=(course_doc.get("generation") or {}).get("strategy"),
                            free=asked.get("tags") or [])
        inserted = upsert_course_metadata(conn, CourseMetadata(
            course_id=course_id, organization_id=organization_id, title=course_doc.get("title"),
            subject=course_doc.get("subject"), grade_band=course_doc.get("gradeBand"),
            item_count=len(course_doc.get("items") or []), storage_path=course_path(course_id),
            latest_job_id=job_id, tags=tags, visibility=asked.get("visibility") or "org"))
        if inserted is None:
            raise CourseOwnedElsewhere(f"course id {course_id!r} belongs to another organization")
        action = "added" if inserted else "updated"
        logged = add_catalog_update(conn, course_id=course_id, organization_id=organization_id, action=action,
                                    course_title=course_doc.get("title"), job_id=job_id)
        # item ids were checked against the request at enqueue; the course was built to that request
        planned = plan_images(course_doc, request_specs(wants_images, asked.get("item_images")))
        media = enqueue_planned(conn, organization_id=organization_id, course_id=course_id, planned=planned,
                                key_prefix=str(job_id), course_job_id=job_id)
    return RecordResult(catalog_action=action if logged else None, media_jobs=media)
