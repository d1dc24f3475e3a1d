"""Paged reads of the job tables for the job lists of a UI: filters, newest first, and the total count.

``JobQueue.list`` answers the operator's short questions (a status, a course); the original system's
job pages ask for more — jobs since some hours, a search in the subject, one job id, pages with a total
(``list-course-jobs``) and media jobs of one type (``list-jobs?jobType=image``). Those reads live here as
one query, so the organization boundary is a ``WHERE`` clause of the SQL (``organization_id =
ANY(...)``) and never a filter applied after reading another organization's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ignite_dagster.queue.models import CourseJob, JobStatus, MediaJob

PAGE_MAX = 200


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first, and how many jobs match the filters in all."""

    jobs: list[CourseJob] | list[MediaJob]
    total: int


def _like_pattern(text: str) -> str:
    """``text`` as a literal inside ILIKE (``%`` and ``_`` in a subject are characters, not wildcards)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def find_jobs(
    pool: ConnectionPool,
    table: str,
    *,
    organizations: Sequence[UUID] | None,
    status: JobStatus | None = None,
    course_id: str | None = None,
    job_id: UUID | None = None,
    since: timedelta | None = None,
    subject_contains: str | None = None,
    media_type: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> JobPage:
    """Jobs of ``table`` matching every filter given, newest first, ``limit`` from ``offset`` on.

    ``organizations``: the organizations whose jobs may be read (None: every organization, for a
    superadmin). ``since``: created within that long before now (the database's clock).
    ``subject_contains``: case-insensitive substring of the course job's subject. ``media_type``: media
    jobs of that type only. The total counts every matching job, not just this page.
    """
    models: dict[str, type[CourseJob] | type[MediaJob]] = {"ai_course_jobs": CourseJob, "ai_media_jobs": MediaJob}
    if table not in models:
        raise ValueError(f"invalid job table {table!r}")
    if subject_contains is not None and table != "ai_course_jobs":
        raise ValueError("subject search is a course job filter")
    if media_type is not None and table != "ai_media_jobs":
        raise ValueError("media_type is a media job filter")
    where: list[str] = []
    params: dict[str, Any] = {"limit": max(1, min(limit, PAGE_MAX)), "offset": max(0, offset)}
    if organizations is not None:
        where.append("organization_id = ANY(%(orgs)s)")
        params["orgs"] = list(organizations)
    filters = (("status", status), ("course_id", course_id), ("id", job_id), ("media_type", media_type))
    for column, value in filters:
        if value is not None:
            where.append(f"{column} = %({column})s")
            params[column] = value
    if since is not None:
        where.append("created_at >= now() - %(since)s")
        params["since"] = since
    if subject_contains is not None:
        where.append("subject ILIKE %(subject)s")
        params["subject"] = _like_pattern(subject_contains)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    # The page and its total in one statement (one snapshot); only a page past the end counts apart.
    sql = (
        f"SELECT *, count(*) OVER () AS total_matching FROM {table} {clause} "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s"
    )
    count_sql = f"SELECT count(*) AS n FROM {table} {clause}"
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()
        if rows:
            total = int(rows[0]["total_matching"])
        else:  # a page past the end still reports how many there are
            total = int(cur.execute(count_sql, params).fetchone()["n"])
    model = models[table]
    return JobPage(jobs=[model(**row) for row in rows], total=total)  # type: ignore[misc]
