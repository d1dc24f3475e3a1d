"""Persisting a generated course: course.json (CAS, media kept), metadata, catalog, media jobs, completion.

Order matters for "never a half course" and "never a duplicate catalog row":
1. ownership check: a course id belongs to one organization for good;
2. course.json written by compare-and-swap, re-checking the claim before every attempt, merging media
   URLs already attached (a regeneration never loses an image);
3. one database transaction: complete the job (fenced by attempt) first, then metadata upsert, the
   catalog row (unique per job) and the media jobs. A refused completion rolls the rest back.
If the process dies between 2 and 3, reconciliation finds course.json written by this job and finishes
step 3 (``record_course``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from ignite_dagster.course.tags import catalog_tags
from ignite_dagster.media.markers import merge_attached_media
from ignite_dagster.media.targets import enqueue_planned, plan_images, request_specs
from ignite_dagster.queue.errors import LostClaim
from ignite_dagster.storage.base import ObjectStore
from ignite_dagster.storage.cas import update_json
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
        return merge_attached_media(json.loads(json.dumps(course_doc)), current)

    return update_json(store, course_path(course_doc["id"]), mutate)


def check_course_owner(conn: psycopg.Connection, course_id: str, organization_id: UUID) -> None:
    row = conn.execute("SELECT organization_id FROM course_metadata WHERE id = %s", (course_id,)).fetchone()
    owner = row[0] if row and not isinstance(row, dict) else (row or {}).get("organization_id")
    if owner is not None and owner != organization_id:
        raise CourseOwnedElsewhere(f"course id {course_id!r} belongs to another organization")


@dataclass
class RecordResult:
    catalog_action: str | None
    media_jobs: list[UUID] = field(default_factory=list)


def record_course(
    conn: psycopg.Connection,
    *,
    job_id: UUID,
    organization_id: UUID,
    course_doc: dict[str, Any],
    complete_sql: tuple[str, tuple] | None,
    wants_images: bool,
) -> RecordResult:
    """Metadata upsert + one catalog row per job + media jobs (+ the fenced completion) in one transaction.

    ``complete_sql`` is the statement that marks the job done (``complete_job`` for a worker, the
    reconciler's function otherwise); when it returns false the claim was lost and nothing is kept.
    The catalog row's tags and visibility and the item images come from the job's own row (the request
    as accepted), so the worker and the reconciler record the same thing.
    """
    course_id = course_doc["id"]
    with conn.transaction():
        if complete_sql is not None:
            ok = conn.execute(*complete_sql).fetchone()
            ok = next(iter(ok.values())) if isinstance(ok, dict) else ok[0]
            if not ok:
                raise LostClaim(f"job {job_id}: completion refused (claim lost)")
        asked = _request_columns(conn, job_id)
        tags = catalog_tags(subject=asked.get("subject") or course_doc.get("subject"),
                            grade_band=course_doc.get("gradeBand") or asked.get("grade_band"),
                            locale=course_doc.get("locale") or asked.get("locale"),
                            strategy=(course_doc.get("generation") or {}).get("strategy"),
                            free=asked.get("tags") or [])
        row = conn.execute(
            """
            INSERT INTO course_metadata (id, organization_id, title, subject, grade_band, item_count,
                                         storage_path, latest_job_id, tags, visibility)
            VALUES (%(id)s, %(org)s, %(title)s, %(subject)s, %(band)s, %(items)s, %(path)s, %(job)s,
                    %(tags)s, %(visibility)s)
            ON CONFLICT (id) DO UPDATE SET
                title = EXCLUDED.title, subject = EXCLUDED.subject, grade_band = EXCLUDED.grade_band,
                item_count = EXCLUDED.item_count, storage_path = EXCLUDED.storage_path,
                latest_job_id = EXCLUDED.latest_job_id, tags = EXCLUDED.tags, visibility = EXCLUDED.visibility,
                etag = course_metadata.etag + 1, updated_at = now()
            WHERE course_metadata.organization_id = EXCLUDED.organization_id
            RETURNING (xmax = 0) AS inserted
            """,
            {"id": course_id, "org": organization_id, "title": course_doc.get("title"),
             "subject": course_doc.get("subject"), "band": course_doc.get("gradeBand"),
             "items": len(course_doc.get("items") or []), "path": course_path(course_id), "job": job_id,
             "tags": Jsonb(tags), "visibility": asked.get("visibility") or "org"},
        ).fetchone()
        if row is None:
            raise CourseOwnedElsewhere(f"course id {course_id!r} belongs to another organization")
        inserted = row["inserted"] if isinstance(row, dict) else row[0]
        action = "added" if inserted else "updated"
        cat = conn.execute(
            """
            INSERT INTO catalog_updates (course_id, organization_id, action, course_title, job_id)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO NOTHING RETURNING id
            """,
            (course_id, organization_id, action, course_doc.get("title"), job_id),
        ).fetchone()
        # item ids were checked against the request at enqueue; the course was built to that request
        planned = plan_images(course_doc, request_specs(wants_images, asked.get("item_images")))
        media = enqueue_planned(conn, organization_id=organization_id, course_id=course_id, planned=planned,
                                key_prefix=str(job_id), course_job_id=job_id)
    return RecordResult(catalog_action=action if cat else None, media_jobs=media)


def _request_columns(conn: psycopg.Connection, job_id: UUID) -> dict[str, Any]:
    """The request columns the catalog row and the item images come from (empty for a job row that is
    gone: the course is then recorded with its document's facets only)."""
    row = conn.execute(
        "SELECT subject, grade_band, locale, tags, visibility, item_images FROM ai_course_jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    if row is None:
        return {}
    if isinstance(row, dict):
        return dict(row)
    return dict(zip(("subject", "grade_band", "locale", "tags", "visibility", "item_images"), row, strict=True))
