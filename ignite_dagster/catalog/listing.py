"""Reading the catalog: courses filtered by tag, visibility, subject, grade band — within what the caller
may see.

Who sees what (one rule, for the HTTP route and the CLI alike):

* a course with visibility ``org`` is listed only to callers with a role in its organization (and to
  superadmins / operators);
* a course with visibility ``public`` is listed to every authenticated caller, whatever their
  organization: that is what ``public`` is for (the seed's catalog lets any signed-in user read public
  courses). Listing it does not let anyone change it: writes still need a write role in the owning
  organization, and another organization's course is a 404 for every write route.
* ``organizationId`` narrows the list to one organization the caller can see (404 otherwise, like a
  missing one); ``visibility=public`` narrows it to public courses.

The organization boundary is in the SQL itself (``organization_id = ANY(%s) OR visibility = 'public'``),
not a filter applied after reading other organizations' rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from ignite_dagster.auth import ConnSource, Principal, can_read, connection

LIST_MAX = 200


class OrganizationNotVisible(LookupError):
    """``organizationId`` names an organization the caller cannot see (answered like a missing one)."""


class CatalogEntry(BaseModel):
    """One catalog row as a reader sees it."""

    course_id: str
    organization_id: UUID
    title: str
    subject: str | None
    grade_band: str | None
    visibility: Literal["org", "public"]
    tags: list[str]
    content_version: int
    item_count: int
    storage_path: str
    latest_job_id: UUID | None
    updated_at: datetime


def list_courses(
    source: ConnSource,
    principal: Principal,
    *,
    tags: Sequence[str] = (),
    visibility: Literal["org", "public"] | None = None,
    subject: str | None = None,
    grade_band: str | None = None,
    organization_id: UUID | None = None,
    limit: int = 50,
) -> list[CatalogEntry]:
    """Courses the caller may see, newest first; every tag in ``tags`` must be on the course (AND),
    ``subject`` matches case-insensitively as a whole. Archived and deleted courses are not listed."""
    if organization_id is not None and not can_read(principal, organization_id):
        raise OrganizationNotVisible(f"organization {organization_id} not found")
    where = ["deleted_at IS NULL", "archived_at IS NULL"]
    params: dict[str, Any] = {"limit": max(1, min(limit, LIST_MAX))}
    if not principal.is_superadmin:
        where.append("(organization_id = ANY(%(orgs)s) OR visibility = 'public')")
        params["orgs"] = list(principal.organizations)
    if organization_id is not None:
        where.append("organization_id = %(org)s")
        params["org"] = organization_id
    if tags:
        where.append("tags @> %(tags)s")
        params["tags"] = Jsonb(list(tags))
    if visibility is not None:
        where.append("visibility = %(visibility)s")
        params["visibility"] = visibility
    if subject is not None:
        where.append("lower(subject) = lower(%(subject)s)")
        params["subject"] = subject.strip()
    if grade_band is not None:
        where.append("grade_band = %(band)s")
        params["band"] = grade_band
    sql = (
        "SELECT id AS course_id, organization_id, title, subject, grade_band, visibility, tags, content_version, "
        "item_count, storage_path, latest_job_id, updated_at FROM course_metadata "
        f"WHERE {' AND '.join(where)} ORDER BY updated_at DESC, id LIMIT %(limit)s"
    )
    with connection(source) as conn:
        rows = conn.execute(sql, params).fetchall()
    return [CatalogEntry(**row) for row in rows]
