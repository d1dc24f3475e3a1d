"""The catalog rows a generated course is recorded with: its ``course_metadata`` row and one
``catalog_updates`` row per job.

A worker's persist and the reconciler write them (``course_jobs/persist.py``); the statements run on the
caller's connection because they are one transaction with the job's fenced completion and its media jobs:
a refused completion leaves no catalog row behind. The API's catalog reads (``listing``, ``reading``) and
publishing read and update the same rows.

Rows may come as dicts (the factory's connections) or as tuples (a plain psycopg connection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb


def course_owner(conn: psycopg.Connection, course_id: str) -> UUID | None:
    """The organization a course id belongs to (for good, once recorded); None for a new course."""
    row = conn.execute("SELECT organization_id FROM course_metadata WHERE id = %s", (course_id,)).fetchone()
    return row[0] if row and not isinstance(row, dict) else (row or {}).get("organization_id")


@dataclass(frozen=True)
class CourseMetadata:
    """What a course's metadata row says about it (the facets the catalog lists and filters on)."""

    course_id: str
    organization_id: UUID
    title: str | None
    subject: str | None
    grade_band: str | None
    item_count: int
    storage_path: str
    latest_job_id: UUID
    tags: list[str]
    visibility: str


def upsert_course_metadata(conn: psycopg.Connection, meta: CourseMetadata) -> bool | None:
    """Insert or refresh the course's metadata row (``etag`` + 1 on refresh). True: inserted, False:
    updated, None: the id belongs to another organization (the row is left as it was)."""
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
        {"id": meta.course_id, "org": meta.organization_id, "title": meta.title, "subject": meta.subject,
         "band": meta.grade_band, "items": meta.item_count, "path": meta.storage_path, "job": meta.latest_job_id,
         "tags": Jsonb(meta.tags), "visibility": meta.visibility},
    ).fetchone()
    if row is None:
        return None
    return bool(row["inserted"] if isinstance(row, dict) else row[0])


def add_catalog_update(conn: psycopg.Connection, *, course_id: str, organization_id: UUID, action: str,
                       course_title: str | None, job_id: UUID) -> bool:
    """The catalog's "added"/"updated" entry for this job; False when the job already has one (a
    reconciler finishing what a worker recorded, a replay): never a duplicate catalog row."""
    row: Any = conn.execute(
        """
        INSERT INTO catalog_updates (course_id, organization_id, action, course_title, job_id)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (job_id) WHERE job_id IS NOT NULL DO NOTHING RETURNING id
        """,
        (course_id, organization_id, action, course_title, job_id),
    ).fetchone()
    return row is not None
