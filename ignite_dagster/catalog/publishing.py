"""Publishing a course: an immutable, numbered snapshot plus its catalog rows.

``publish_course`` is shared by the HTTP API (``publish-course``), the CLI (``ignite publish``) and the
Dagster layer. Guarantees, and why each matters:

* **Only valid content is published.** ``course.json`` is re-validated (course-format.md codes); a
  course with errors is refused with those codes, because a published version is what learners see.
* **Concurrent publishes get distinct versions.** The version is taken by ``UPDATE course_metadata ...
  RETURNING`` inside one transaction: the row lock serializes publishers of one course until commit.
* **A version is never overwritten.** ``versions/<v>.json`` is written with ``if_absent``. If the file
  already exists (a previous publish wrote it and then failed before its commit) with the same bytes
  it is adopted; with different bytes this publish moves on to the next number, leaving a gap rather
  than rewriting history.
* **Storage and database agree.** The snapshot is written inside the transaction, before the rows;
  if storage fails, the transaction rolls back and no version row points at a missing file.

``course.json`` itself is not rewritten: generation and media attachment own it (compare-and-swap);
the snapshot carries the published ``contentVersion``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from ignite_dagster.auth import ConnSource, Principal, can_read, can_write, connection
from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import parse_course
from ignite_dagster.course.validation import errors_of, validate_course, warnings_of
from ignite_dagster.storage.base import NotFound, ObjectStore, PreconditionFailed, StorageError
from ignite_dagster.storage.keys import course_path, version_path

CHANGE_SUMMARY_MAX = 2000
# How many occupied version numbers one publish may skip before it gives up (see module docstring).
MAX_VERSION_SKIPS = 5


class PublishError(Exception):
    """Publishing refused or failed; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, code: str, message: str, issues: list[Issue] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.issues = list(issues or [])


class PublishResult(BaseModel):
    course_id: str
    organization_id: UUID
    version: int
    etag: int
    storage_path: str
    content_sha256: str
    catalog_version: int
    published_by: UUID | None = None
    published_by_agent: str | None = None
    warnings: list[Issue] = Field(default_factory=list)


def _authorize(source: ConnSource, course_id: str, principal: Principal) -> UUID:
    """The course's organization, after checking the caller may publish there.

    A course the caller cannot see answers exactly like a missing one (404), so ids of other
    organizations' courses are not confirmed to exist.
    """
    with connection(source) as conn:
        row = conn.execute(
            "SELECT organization_id FROM course_metadata WHERE id = %s AND deleted_at IS NULL", (course_id,)
        ).fetchone()
    org = None if row is None else (row["organization_id"] if isinstance(row, dict) else row[0])
    if org is None or not can_read(principal, org):
        raise PublishError(404, "not_found", f"course {course_id} not found")
    if not can_write(principal, org):
        raise PublishError(403, "forbidden", "publishing needs the editor or org_admin role in the course's organization")
    return org


def load_valid_course(store: ObjectStore, course_id: str) -> tuple[Any, list[Issue]]:
    """The parsed course and its warnings; PublishError with the issue codes when it has errors."""
    try:
        raw = store.get(course_path(course_id)).data
    except NotFound as exc:
        raise PublishError(409, "course_not_generated", f"course {course_id} has no course.json yet") from exc
    except (StorageError, OSError) as exc:
        raise PublishError(503, "storage_unavailable", f"cannot read course {course_id}: {exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        issue = Issue(code="schema_error", severity="error", message=f"course.json is not JSON: {exc}")
        raise PublishError(422, "invalid_course", "course.json is not valid JSON", [issue]) from exc
    course, issues = parse_course(data)
    if course is not None:
        issues = validate_course(course)
        if course.id != course_id:
            issues.append(
                Issue(code="schema_error", severity="error", message=f"course.json id {course.id!r} is not {course_id!r}", field="id")
            )
    errors = errors_of(issues)
    if errors:
        codes = sorted({i.code for i in errors})
        raise PublishError(422, "invalid_course", f"course {course_id} is invalid: {', '.join(codes)}", errors)
    return course, warnings_of(issues)


def publish_course(
    conn_or_pool: ConnSource,
    store: ObjectStore,
    course_id: str,
    *,
    principal_or_actor: Principal,
    change_summary: str | None = None,
) -> PublishResult:
    """Publish the current ``course.json`` of ``course_id`` as a new version (module docstring)."""
    principal = principal_or_actor
    if change_summary is not None and len(change_summary) > CHANGE_SUMMARY_MAX:
        raise PublishError(422, "invalid_request", f"changeSummary must be at most {CHANGE_SUMMARY_MAX} characters")
    if principal.kind == "user":
        if principal.user_id is None:
            raise ValueError("a user principal without a verified user id cannot publish")
        published_by, published_by_agent = principal.user_id, None
    else:
        published_by, published_by_agent = None, principal.audit_text()

    org = _authorize(conn_or_pool, course_id, principal)
    course, warnings = load_valid_course(store, course_id)

    with connection(conn_or_pool) as conn, conn.transaction():
        version = etag = 0
        meta: dict[str, Any] = {}
        for _ in range(MAX_VERSION_SKIPS + 1):
            meta = conn.execute(
                "UPDATE course_metadata SET content_version = content_version + 1, etag = etag + 1, "
                "updated_at = now() WHERE id = %s AND deleted_at IS NULL AND organization_id = %s "
                "RETURNING id, organization_id, title, subject, grade_band, visibility, tags, item_count, "
                "content_version, etag, storage_path, latest_job_id",
                (course_id, org),
            ).fetchone()
            if meta is None:  # deleted or moved between the check and the lock
                raise PublishError(404, "not_found", f"course {course_id} not found")
            meta = dict(meta) if isinstance(meta, dict) else _as_dict(meta)
            version, etag = meta["content_version"], meta["etag"]
            snapshot = course.model_copy(update={"content_version": str(version)}).to_json_bytes()
            key = version_path(course_id, version)
            if _write_snapshot(store, key, snapshot):
                break
        else:
            raise PublishError(409, "version_conflict", f"versions of {course_id} are occupied in storage; retry")

        sha = hashlib.sha256(snapshot).hexdigest()
        snapshot_meta = json.loads(json.dumps(meta, default=str))
        conn.execute(
            "INSERT INTO course_versions (course_id, version, storage_path, content_sha256, published_by, "
            "published_by_agent, change_summary, metadata_snapshot) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (course_id, version, key, sha, published_by, published_by_agent, change_summary, Jsonb(snapshot_meta)),
        )
        row = conn.execute(
            "INSERT INTO catalog_updates (course_id, organization_id, action, course_title, course_version) "
            "VALUES (%s, %s, 'updated', %s, %s) RETURNING catalog_version",
            (course_id, org, meta["title"], version),
        ).fetchone()
        catalog_version = row["catalog_version"] if isinstance(row, dict) else row[0]

    return PublishResult(
        course_id=course_id,
        organization_id=org,
        version=version,
        etag=etag,
        storage_path=key,
        content_sha256=sha,
        catalog_version=catalog_version,
        published_by=published_by,
        published_by_agent=published_by_agent,
        warnings=warnings,
    )


def _write_snapshot(store: ObjectStore, key: str, data: bytes) -> bool:
    """True when ``key`` now holds ``data`` (written by us, or an identical orphan adopted); False when
    the key is taken by different bytes. Storage failures raise (and roll the transaction back)."""
    try:
        store.put(key, data, content_type="application/json", if_absent=True)
        return True
    except PreconditionFailed:
        try:
            return store.get(key).data == data
        except (StorageError, OSError) as exc:
            raise PublishError(503, "storage_unavailable", f"cannot read {key}: {exc}") from exc
    except (StorageError, OSError) as exc:
        raise PublishError(503, "storage_unavailable", f"cannot write {key}: {exc}") from exc


def _as_dict(row: Any) -> dict[str, Any]:
    names = ("id", "organization_id", "title", "subject", "grade_band", "visibility", "tags", "item_count",
             "content_version", "etag", "storage_path", "latest_job_id")
    return dict(zip(names, row, strict=True))
