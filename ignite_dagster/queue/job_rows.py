"""Statements on one course job's row that run on the caller's connection.

``JobQueue`` opens a connection per call; these take one instead, because their callers need them to share
a transaction or a connection with other writes: persist completes the job (fenced by attempt) in the same
transaction as the catalog rows and the media jobs, so a refused completion rolls those back; the worker
adds an attempt's spend to the job and to the organization's day on one connection. Keeping the
statements here, named, is what lets the worker, persist and the reconciler hold no SQL of their own.

Rows may come as dicts (the factory's connections, ``db/pool.py``) or as tuples (a plain psycopg
connection a test or a tool hands in); ``_first`` reads either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

# the request as accepted: what the catalog row (tags, visibility) and the item images are made from
REQUEST_COLUMNS = ("subject", "grade_band", "locale", "tags", "visibility", "item_images")


def _first(row: Any) -> Any:
    """The first column of a dict or tuple row; None for no row."""
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def _jsonb(doc: dict[str, Any] | None) -> Jsonb:
    """A result document as the queue stores it (UUIDs, datetimes and decimals as strings)."""
    return Jsonb(json.loads(json.dumps(doc or {}, default=str)))


@dataclass(frozen=True)
class UnsentEvent:
    """A ``job_events`` row a worker has decided on but not written yet: it rides on the job's next
    statement (the next stage's start, the completion's bookkeeping) instead of costing a round trip of
    its own (sql/012). Events are numbered when written, in the order they were decided."""

    step: str
    status: str = "info"
    progress: int | None = None
    message: str | None = None
    meta: dict[str, Any] | None = None


def events_jsonb(events: Sequence[UnsentEvent]) -> Jsonb | None:
    """Events as sql/012's functions take them (a JSON array, in order); None for none."""
    if not events:
        return None
    return Jsonb([{"step": e.step, "status": e.status, "progress": e.progress, "message": e.message,
                   "meta": json.loads(json.dumps(e.meta, default=str)) if e.meta else None} for e in events])


def complete_job(conn: psycopg.Connection, job_id: UUID, table: str, attempt: int,
                 result: dict[str, Any] | None) -> bool:
    """``complete_job``: done with ``result``, fenced by attempt; False when this attempt no longer holds it."""
    row = conn.execute("SELECT complete_job(%s, %s, %s, %s)", (job_id, table, attempt, _jsonb(result))).fetchone()
    return bool(_first(row))


def reconcile_course_job_done(conn: psycopg.Connection, job_id: UUID, attempt: int, result_path: str,
                              result: dict[str, Any], written_at: datetime | None) -> bool:
    """``reconcile_course_job_done``: a job whose course.json this attempt wrote is marked done (fenced by
    attempt, refused while a live claim holds it); False when refused."""
    row = conn.execute("SELECT reconcile_course_job_done(%s, %s, %s, %s, %s)",
                       (job_id, attempt, result_path, _jsonb(result), written_at)).fetchone()
    return bool(_first(row))


def request_columns(conn: psycopg.Connection, job_id: UUID) -> dict[str, Any]:
    """The request columns of a course job (``REQUEST_COLUMNS``); empty for a job row that is gone."""
    row = conn.execute(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM ai_course_jobs WHERE id = %s",
                       (job_id,)).fetchone()
    if row is None:
        return {}
    if isinstance(row, dict):
        return dict(row)
    return dict(zip(REQUEST_COLUMNS, row, strict=True))


def add_attempt_spend(conn: psycopg.Connection, job_id: UUID, attempt: int, tokens: int,
                      cost_usd: Decimal | None) -> None:
    """Add a failed attempt's spend to the job's books (``tokens``, ``cost_usd``: the job's spend over all
    its attempts), fenced by attempt and only while processing. An unknown price (``cost_usd`` None)
    makes the job's cost unknown for good (NULL and ``cost_known`` false), never 0."""
    conn.execute(
        "UPDATE ai_course_jobs SET tokens = coalesce(tokens, 0) + %(tokens)s, "
        "cost_known = coalesce(cost_known, true) AND %(known)s, "
        "cost_usd = CASE WHEN coalesce(cost_known, true) AND %(known)s "
        "THEN coalesce(cost_usd, 0) + %(cost)s END, updated_at = now() "
        "WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'processing'",
        {"tokens": tokens, "known": cost_usd is not None, "cost": cost_usd, "id": job_id, "attempt": attempt},
    )


def set_cost_known(conn: psycopg.Connection, job_id: UUID, attempt: int, known: bool,
                   events: Sequence[UnsentEvent] = ()) -> None:
    """After completion, the job's ``cost_known`` as the finished attempt's summary says (fenced by attempt;
    ``complete_job`` writes tokens and cost from the result, not this flag), and in the same statement the
    job's ``events`` not yet written (the last stage's success: one round trip for both)."""
    if not events:
        conn.execute("UPDATE ai_course_jobs SET cost_known = %s WHERE id = %s AND attempt = %s",
                     (known, job_id, attempt))
        return
    # a data-modifying WITH always runs to completion; the events are written whether or not the row matched
    conn.execute(
        "WITH known AS (UPDATE ai_course_jobs SET cost_known = %(known)s WHERE id = %(id)s AND attempt = %(attempt)s "
        "RETURNING 1) SELECT add_job_events(%(id)s, 'ai_course_jobs', %(attempt)s, %(events)s)",
        {"known": known, "id": job_id, "attempt": attempt, "events": events_jsonb(events)},
    )
