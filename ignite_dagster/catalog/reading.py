"""Reading one course as an editor loads it, and the record of one published version.

Who may read a course is the catalog's rule (catalog/listing.py): a course with visibility ``org`` only
within its organization, a ``public`` one by every authenticated caller. A course the caller may not
read answers exactly like a missing one (:class:`CourseNotFound`), so other organizations' course ids
are never confirmed to exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ignite_dagster.auth import ConnSource, Principal, can_read, connection
from ignite_dagster.storage.base import NotFound, ObjectStore
from ignite_dagster.storage.keys import course_path


class CourseNotFound(LookupError):
    """No such course, not visible to the caller, or no content generated yet."""


@dataclass(frozen=True)
class StoredCourse:
    course_id: str
    organization_id: UUID
    visibility: str
    content_version: int
    document: dict[str, Any]


def read_course(source: ConnSource, store: ObjectStore, principal: Principal, course_id: str) -> StoredCourse:
    """The stored ``course.json`` of ``course_id`` if the caller may read it.

    Storage failures other than a missing object propagate (the caller answers 503): an outage is not
    reported as "no such course"."""
    with connection(source) as conn:
        row = conn.execute(
            "SELECT organization_id, visibility, content_version FROM course_metadata "
            "WHERE id = %s AND deleted_at IS NULL", (course_id,)
        ).fetchone()
    if row is None:
        raise CourseNotFound(f"course {course_id} not found")
    org, visibility, content_version = _values(row, "organization_id", "visibility", "content_version")
    if visibility != "public" and not can_read(principal, org):
        raise CourseNotFound(f"course {course_id} not found")
    try:
        raw = store.get(course_path(course_id)).data
    except NotFound as exc:
        raise CourseNotFound(f"course {course_id} has no content yet (no course.json)") from exc
    return StoredCourse(course_id=course_id, organization_id=org, visibility=visibility,
                        content_version=content_version, document=json.loads(raw))


@dataclass(frozen=True)
class PublishedVersion:
    snapshot_id: int
    published_at: datetime


def published_version(source: ConnSource, course_id: str, version: int) -> PublishedVersion:
    """The ``course_versions`` row of one published version (its id is the snapshot's id)."""
    with connection(source) as conn:
        row = conn.execute(
            "SELECT id, published_at FROM course_versions WHERE course_id = %s AND version = %s", (course_id, version)
        ).fetchone()
    if row is None:
        raise LookupError(f"course {course_id} has no published version {version}")
    snapshot_id, published_at = _values(row, "id", "published_at")
    return PublishedVersion(snapshot_id=snapshot_id, published_at=published_at)


def _values(row: Any, *names: str) -> tuple[Any, ...]:
    if isinstance(row, dict):
        return tuple(row[name] for name in names)
    return tuple(row)
