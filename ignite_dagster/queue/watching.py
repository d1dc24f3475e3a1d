"""Reads for a tool that watches course jobs it enqueued (``ignite demo``): the rows as they are now, and
the jobs an earlier, interrupted session left queued.

They are plain reads of ``ai_course_jobs`` (no state change, so no queue function in SQL): they live in the
queue package so the job table's SQL stays in one package and the CLI holds none. Every function takes an
open connection (``JobQueue.connection()``): a watcher polls several times a second and keeps one.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import psycopg

from ignite_dagster.queue.models import CourseJob


def course_jobs_now(conn: psycopg.Connection, ids: Sequence[UUID]) -> dict[UUID, CourseJob]:
    """The current row of every job in ``ids`` (a job deleted since is absent), by id."""
    rows = conn.execute("SELECT * FROM ai_course_jobs WHERE id = ANY(%s)", (list(ids),)).fetchall()
    return {row["id"]: CourseJob(**row) for row in rows}


def _prefix_pattern(prefix: str) -> str:
    """``prefix`` as the start of a LIKE pattern (``%`` and ``_`` in it are characters, not wildcards)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def pending_course_jobs(conn: psycopg.Connection, organization_id: UUID, course_ids: Sequence[str], *,
                        key_prefix: str, except_key_prefix: str) -> dict[str, CourseJob]:
    """The oldest still-pending job per course of ``course_ids`` in the organization whose idempotency key
    starts with ``key_prefix`` but not with ``except_key_prefix`` (a session's own keys): the jobs an
    earlier session enqueued and nobody has claimed yet, which a new session re-attaches to instead of
    enqueueing the same course twice."""
    rows = conn.execute(
        "SELECT * FROM ai_course_jobs WHERE organization_id = %s AND course_id = ANY(%s) AND status = 'pending' "
        "AND idempotency_key LIKE %s AND idempotency_key NOT LIKE %s ORDER BY created_at",
        (organization_id, list(course_ids), _prefix_pattern(key_prefix), _prefix_pattern(except_key_prefix)),
    ).fetchall()
    found: dict[str, CourseJob] = {}
    for row in rows:
        found.setdefault(row["course_id"], CourseJob(**row))
    return found
