"""A thin Python manager over the queue's SQL functions (``sql/``; a function redefined
by a later migration runs as the highest-numbered file defines it: the claims as 010 does).

The state machine lives in SQL; this module only names calls, converts rows into typed models and adds
the one thing SQL cannot do for us: computing the deterministic job id of an idempotent request before
anything is written, so side files (special requests) can be stored under the job's id first.

Every queue statement of the factory is a method here (one connection per call) or, when it must share
the caller's transaction, a function of ``job_rows.py``; workers, persist, the lease and the shells
hold no SQL of their own (``tests/unit/test_data_access.py``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ignite_dagster.queue.job_rows import UnsentEvent, complete_job, events_jsonb
from ignite_dagster.queue.models import (
    JOB_TABLES,
    ClaimRef,
    CourseJob,
    EnqueueResult,
    JobEvent,
    JobTable,
    MediaJob,
    NewCourseJob,
    NewMediaJob,
    SweepRow,
)
from ignite_dagster.queue.retry import QUEUE_BACKOFF

log = logging.getLogger(__name__)

# Fixed namespace: the same (organization, Idempotency-Key) always maps to the same job id.
IDEMPOTENCY_NAMESPACE = UUID("6f1d3c52-8a8e-4d1b-9b53-3f7c1f0a2e11")


def idempotent_job_id(organization_id: UUID, key: str) -> UUID:
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{organization_id}:{key}")


def _lock_key(job_id: UUID) -> int:
    """A signed 64-bit advisory-lock key for a job id."""
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


def _insert_sql(table: str, cols: dict[str, Any]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(f'%({k})s' for k in cols)})"


def _check_table(table: str) -> JobTable:
    if table not in JOB_TABLES:
        raise ValueError(f"invalid job table {table!r}: expected one of {', '.join(JOB_TABLES)}")
    return table  # type: ignore[return-value]


_MODELS: dict[str, type[CourseJob] | type[MediaJob]] = {"ai_course_jobs": CourseJob, "ai_media_jobs": MediaJob}


class JobQueue:
    """Queue operations for both job tables. Accepts a pool (services) or a URL (CLI, tests).

    ``org_max_in_flight`` (IGNITE_ORG_MAX_COURSES_IN_FLIGHT) is the per-organization cap the course
    claims respect; None: no cap (the claims still interleave organizations, see claim_course_jobs)."""

    def __init__(self, pool_or_url: ConnectionPool | str, *, org_max_in_flight: int | None = None):
        self._pool = pool_or_url if isinstance(pool_or_url, ConnectionPool) else None
        self._url = pool_or_url if isinstance(pool_or_url, str) else None
        self.org_max_in_flight = org_max_in_flight

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
        else:
            with psycopg.connect(self._url, autocommit=True, row_factory=dict_row) as conn:
                yield conn

    def _rows(self, sql: str, params: tuple | dict = ()) -> list[dict[str, Any]]:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _value(self, sql: str, params: tuple | dict = ()) -> Any:
        rows = self._rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    # -- enqueue ------------------------------------------------------------------------------------
    def enqueue_course(
        self,
        job: NewCourseJob,
        *,
        organization_id: UUID,
        idempotency_key: str | None = None,
        created_by: UUID | None = None,
        requested_by: str | None = None,
        before_insert: Callable[[UUID], None] | None = None,
        not_before: datetime | None = None,
    ) -> EnqueueResult:
        """Insert a pending course job, or return the existing one for a replayed idempotency key.

        ``before_insert(job_id)`` runs before the row exists (e.g. to store special requests); if it
        raises, nothing is inserted, so no claimable job is left without its side files.

        With a key, the lookup, ``before_insert`` and the insert run under a transaction-scoped advisory
        lock on the job id: two requests racing on one key cannot both write side files under the same
        id (the loser would overwrite the winner's notes); the second waits and finds the first's row.
        Whether a replay asks for the same thing is the caller's question (``replayed=True``).
        ``not_before`` keeps the sensors from claiming the job before then (a materialization reserves
        the job it is about to claim itself; if its run dies first, the sensor takes the job after).
        """
        cols = job.row()
        cols.update(
            organization_id=organization_id,
            idempotency_key=idempotency_key,
            created_by=created_by,
            requested_by=requested_by,
        )
        if not_before is not None:
            cols["next_attempt_at"] = not_before
        if idempotency_key is None:
            cols["id"] = uuid.uuid4()
            if before_insert is not None:
                before_insert(cols["id"])
            (row,) = self._rows(_insert_sql("ai_course_jobs", cols) + " RETURNING *", cols)
            return EnqueueResult(job=CourseJob(**row), replayed=False)

        cols["id"] = job_id = idempotent_job_id(organization_id, idempotency_key)
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(job_id),))
            existing = conn.execute(
                "SELECT * FROM ai_course_jobs WHERE organization_id = %s AND idempotency_key = %s",
                (organization_id, idempotency_key),
            ).fetchone()
            if existing is not None:
                return EnqueueResult(job=CourseJob(**existing), replayed=True)
            if before_insert is not None:
                before_insert(job_id)
            row = conn.execute(_insert_sql("ai_course_jobs", cols) + " RETURNING *", cols).fetchone()
        return EnqueueResult(job=CourseJob(**row), replayed=False)

    def find_by_idempotency_key(self, organization_id: UUID, key: str) -> CourseJob | None:
        rows = self._rows(
            "SELECT * FROM ai_course_jobs WHERE organization_id = %s AND idempotency_key = %s",
            (organization_id, key),
        )
        return CourseJob(**rows[0]) if rows else None

    def enqueue_media(
        self,
        job: NewMediaJob,
        *,
        organization_id: UUID,
        idempotency_key: str | None = None,
        created_by: UUID | None = None,
        requested_by: str | None = None,
    ) -> EnqueueResult:
        """Insert a pending media job; a key that is live (pending/processing) returns that job."""
        cols = job.model_dump(exclude={"target_ref"})
        cols.update(
            target_ref=Jsonb(job.target_ref.model_dump(exclude_none=True)),
            organization_id=organization_id,
            idempotency_key=idempotency_key,
            created_by=created_by,
            requested_by=requested_by,
        )
        names = ", ".join(cols)
        values = ", ".join(f"%({k})s" for k in cols)
        rows = self._rows(
            f"INSERT INTO ai_media_jobs ({names}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING *", cols
        )
        if rows:
            return EnqueueResult(job=MediaJob(**rows[0]), replayed=False)
        live = self._rows(
            "SELECT * FROM ai_media_jobs WHERE organization_id = %s AND idempotency_key = %s "
            "AND status IN ('pending', 'processing')",
            (organization_id, idempotency_key),
        )
        if not live:
            raise RuntimeError("media job conflicted on insert but no live job holds its key")
        return EnqueueResult(job=MediaJob(**live[0]), replayed=True)

    # -- claims and fenced writes -------------------------------------------------------------------
    def claim_course_jobs(self, worker_id: str | None, limit: int = 1) -> list[CourseJob]:
        """Fair share (``claim_course_jobs``, chosen as sql/011 defines it (see sql/schema.sql), claimed through sql/010's
        ``claim_course_job_ids``): the organization with the fewest jobs in flight first, then priority, then
        the oldest; never a course that already has a job in processing; at most the org cap in flight."""
        if limit == 1:
            rows = self._rows("SELECT * FROM get_next_pending_job(%s, %s)", (worker_id, self.org_max_in_flight))
        else:
            rows = self._rows("SELECT * FROM claim_course_jobs(%s, %s, %s)", (limit, worker_id, self.org_max_in_flight))
        return [CourseJob(**r) for r in rows]

    def claim_media_jobs(self, worker_id: str | None, limit: int = 1) -> list[MediaJob]:
        """Best priority, then the oldest, within the retry budget and past the backoff (``claim_media_jobs``,
        sql/010, claimed through ``claim_media_job_ids``)."""
        if limit == 1:
            rows = self._rows("SELECT * FROM get_next_pending_media_job(%s)", (worker_id,))
        else:
            rows = self._rows("SELECT * FROM claim_media_jobs(%s, %s)", (limit, worker_id))
        return [MediaJob(**r) for r in rows]

    def claim_course_for_materialization(self, course_id: str, worker_id: str) -> CourseJob | None:
        """Claim ``course_id``'s claimable job for an operator's materialization (``claim_course_for_materialization``,
        introduced by sql/009, its claim redefined by sql/010 through ``claim_course_job_ids``).

        Returns the claimed job (``worker_id`` is ours), the job another worker holds (its own
        ``worker_id``: the caller skips the course), or None when the course has no claimable job."""
        rows = self._rows("SELECT * FROM claim_course_for_materialization(%s, %s)", (course_id, worker_id))
        return CourseJob(**rows[0]) if rows else None

    def claim_course_media_jobs(self, course_id: str, worker_id: str, limit: int = 100) -> list[MediaJob]:
        """Claim the queued media jobs of one course (a course_media materialization; ``claim_course_media_jobs``,
        sql/010), ignoring the backoff and the retry budget as an operator's explicit action does."""
        rows = self._rows("SELECT * FROM claim_course_media_jobs(%s, %s, %s)", (course_id, worker_id, limit))
        return [MediaJob(**r) for r in rows]

    def set_run_id(self, job_id: UUID, table: str, attempt: int, run_id: str) -> bool:
        """Stamp the Dagster run that works this attempt (fenced by attempt)."""
        return bool(self._value("SELECT set_job_run_id(%s, %s, %s, %s)", (job_id, _check_table(table), attempt, run_id)))

    def stamp_course_run(self, run_id: str, claims: Sequence[ClaimRef]) -> dict[UUID, CourseJob]:
        """A run's course claims in one statement (``stamp_course_run_claims``, sql/012): every claimed job's
        row by id, the run's id stamped on each one still processing under its claimed attempt (fenced as
        ``set_run_id`` is); a job whose row is gone is absent. The caller tells held claims from the others
        by the row's status and attempt."""
        if not claims:
            return {}
        rows = self._rows("SELECT * FROM stamp_course_run_claims(%s, %s::uuid[], %s::int[])",
                          (run_id, [c[0] for c in claims], [c[1] for c in claims]))
        return {r["id"]: CourseJob(**r) for r in rows}

    def heartbeat(self, job_id: UUID, table: str, attempt: int | None) -> bool:
        return bool(self._value("SELECT update_job_heartbeat(%s, %s, %s)", (job_id, table, attempt)))

    def heartbeat_claims(self, table: str, claims: Sequence[ClaimRef]) -> set[UUID]:
        """Heartbeat a run's claims of one table in one statement (``heartbeat_job_claims``, sql/012; each
        as ``heartbeat`` does, fenced by attempt); returns the ids still held."""
        if not claims:
            return set()
        rows = self._rows("SELECT * FROM heartbeat_job_claims(%s, %s::uuid[], %s::int[]) AS id",
                          (_check_table(table), [c[0] for c in claims], [c[1] for c in claims]))
        return {r["id"] for r in rows}

    def progress(
        self, job_id: UUID, table: str, attempt: int, stage: str, percent: int, message: str | None = None
    ) -> bool:
        return bool(
            self._value(
                "SELECT update_job_progress(%s, %s, %s, %s, %s, %s)",
                (job_id, _check_table(table), attempt, stage, percent, message),
            )
        )

    def refine_progress(self, table: str, updates: Sequence[tuple[UUID, int, str, int, str | None]]) -> int:
        """The latest progress of several jobs within their current stage, in one statement
        (``refine_job_progress``, sql/013): ``(job_id, attempt, stage, percent, message)`` each, written
        only while that attempt holds the job, its stage is still ``stage`` and the percent does not go
        back. Returns how many rows were written."""
        doc = [{"id": str(j), "attempt": a, "stage": st, "percent": p, "message": m} for j, a, st, p, m in updates]
        return int(self._value("SELECT refine_job_progress(%s, %s)", (_check_table(table), Jsonb(doc))) or 0)

    def start_stage(self, job_id: UUID, table: str, attempt: int, stage: str, percent: int,
                    message: str | None = None, events: Sequence[UnsentEvent] = ()) -> bool:
        """A stage transition in one statement (``start_job_stage``, sql/012): the job's ``events`` not yet
        written (the previous stage's success, the claimed event), then ``progress`` for the new stage,
        fenced by attempt. False when this attempt no longer holds the job (the events are written anyway,
        as they were when each had its own statement)."""
        return bool(
            self._value(
                "SELECT start_job_stage(%s, %s, %s, %s, %s, %s, %s)",
                (job_id, _check_table(table), attempt, stage, percent, message, events_jsonb(events)),
            )
        )

    def add_events(self, job_id: UUID, table: str, attempt: int | None, events: Sequence[UnsentEvent]) -> None:
        """Several events of one job in one statement, in order (``add_job_events``, sql/012). Best effort,
        like ``event``."""
        if not events:
            return
        try:
            self._value("SELECT add_job_events(%s, %s, %s, %s)", (job_id, table, attempt, events_jsonb(events)))
        except Exception as exc:  # noqa: BLE001 - events must never fail a job
            log.warning("job events %s/%s not recorded: %s", job_id, ", ".join(e.step for e in events), exc)

    def event(
        self,
        job_id: UUID,
        table: str,
        attempt: int | None,
        step: str,
        status: str = "info",
        progress: int | None = None,
        message: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Best effort: an event that cannot be written is logged, never raised into the job."""
        try:
            self._value(
                "SELECT add_job_event(%s, %s, %s, %s, %s, %s, %s, %s)",
                (job_id, table, attempt, step, status, progress, message, Jsonb(meta) if meta else None),
            )
        except Exception as exc:  # noqa: BLE001 - events must never fail a job
            log.warning("job event %s/%s not recorded: %s", job_id, step, exc)

    def complete(self, job_id: UUID, table: str, attempt: int, result: dict[str, Any] | None = None) -> bool:
        """Done with ``result`` (fenced by attempt); the statement is ``job_rows.complete_job``, which persist
        runs inside its own transaction instead."""
        with self.connection() as conn:
            return complete_job(conn, job_id, _check_table(table), attempt, result)

    def fail(
        self,
        job_id: UUID,
        table: str,
        attempt: int,
        error: str,
        reason_code: str,
        retryable: bool = True,
        backoff_base: timedelta = QUEUE_BACKOFF.base,
        backoff_cap: timedelta = QUEUE_BACKOFF.cap,
        retry_after: timedelta | None = None,
    ) -> str | None:
        """Returns the new status (``failed`` or ``dead_letter``), or None when the attempt is fenced.

        ``retry_after`` (an upstream Retry-After) is a floor under the backoff."""
        return self._value(
            "SELECT fail_job(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (job_id, _check_table(table), attempt, error[:4000], reason_code, retryable, backoff_base, backoff_cap,
             retry_after),
        )

    def defer_budget_exhausted(self, job_id: UUID, attempt: int, error: str, until: datetime) -> str | None:
        """Fail a course job as ``budget_exhausted`` until ``until`` without spending a retry (fenced)."""
        return self._value("SELECT defer_job_budget(%s, %s, %s, %s)", (job_id, attempt, error[:4000], until))

    def usage(self, *, days: int = 7, organization_id: UUID | None = None) -> list[dict[str, Any]]:
        """Tokens and cost per organization and UTC day (org_usage_daily), newest day first."""
        sql = ("SELECT u.day, u.organization_id, o.name AS organization, u.calls, u.tokens, u.cost_usd, "
               "u.unpriced_calls, u.unpriced_tokens FROM org_usage_daily u JOIN organizations o "
               "ON o.id = u.organization_id WHERE u.day > (now() AT TIME ZONE 'UTC')::date - %s")
        params: tuple = (days,)
        if organization_id is not None:
            sql += " AND u.organization_id = %s"
            params += (organization_id,)
        return self._rows(sql + " ORDER BY u.day DESC, o.name", params)

    def requeue(self, job_id: UUID, table: str) -> bool:
        return bool(self._value("SELECT requeue_job(%s, %s)", (job_id, _check_table(table))))

    # -- claims seen from outside the run that holds them (the daemon's sensor tick, the reconciler) ---
    # A claim is made by a sensor before its run exists; until the run's process starts its Lease, the
    # daemon vouches for it. The Dagster shell calls these; they know nothing of Dagster.
    def keep_claims_alive(self, table: str, claims: list[ClaimRef]) -> int:
        """Heartbeat claims of runs that are queued or starting (``keep_claims_alive``, fenced by attempt);
        returns how many are held."""
        if not claims:
            return 0
        return int(self._value("SELECT keep_claims_alive(%s, %s::uuid[], %s::int[]) AS n",
                               (table, [c[0] for c in claims], [c[1] for c in claims])))

    def release_or_fail_claim(self, table: str, claim: ClaimRef, error: str, reason_code: str, *,
                              backoff_base: timedelta, backoff_cap: timedelta) -> str | None:
        """A dead or canceled run's claim (``release_or_fail_claim``): back to pending without spending a
        retry when no stage ran, otherwise failed (retryable, with backoff). Returns the new status; None
        when the claim was not held."""
        return self._value("SELECT release_or_fail_claim(%s, %s, %s, %s, %s, %s, %s) AS s",
                           (claim[0], table, claim[1], error[:4000], reason_code, backoff_base, backoff_cap))

    def claim_rows(self, table: str | None, job_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
        """The lifecycle columns of the given jobs (one query), keyed by job id; ``table`` None looks in
        both tables (a run's claims are all of one table, but a run of an asset job does not say which)."""
        if not job_ids:
            return {}
        tables = JOB_TABLES if table is None else (table,)
        if not set(tables) <= set(JOB_TABLES):
            raise ValueError(f"invalid job table: {table}")
        cols = "id, status, attempt, progress_stage, last_heartbeat, completed_at, updated_at"
        sql = " UNION ALL ".join(f"SELECT {cols} FROM {t} WHERE id = ANY(%(ids)s::uuid[])" for t in tables)
        return {r["id"]: r for r in self._rows(sql, {"ids": list(job_ids)})}

    # -- reconciliation (course_jobs.reconcile, media.reconcile) ------------------------------------
    def unfinished_jobs(self, table: str, quiet_for: timedelta, limit: int) -> list[dict[str, Any]]:
        """failed/stale jobs, and processing ones whose heartbeat has been quiet for ``quiet_for``, the
        longest untouched first: what reconciliation checks against storage."""
        return self._rows(
            f"SELECT * FROM {_check_table(table)} WHERE status IN ('failed', 'stale') "
            "OR (status = 'processing' AND last_heartbeat < now() - %s) ORDER BY updated_at LIMIT %s",
            (quiet_for, limit),
        )

    def reconcile_media_job_done(self, job_id: UUID, attempt: int, url: str, key: str) -> bool:
        """``reconcile_media_job_done``: a media job whose stored image is attached is marked done (fenced
        by attempt); False when refused."""
        return bool(self._value("SELECT reconcile_media_job_done(%s, %s, %s, %s) AS ok", (job_id, attempt, url, key)))

    # -- sweeps -------------------------------------------------------------------------------------
    def mark_stale(self, timeout: timedelta = timedelta(minutes=5)) -> list[SweepRow]:
        return [SweepRow(**r) for r in self._rows("SELECT * FROM mark_stale_jobs(%s)", (timeout,))]

    def move_to_dead_letter(self) -> list[SweepRow]:
        return [SweepRow(**r) for r in self._rows("SELECT * FROM move_to_dead_letter()")]

    # -- reads --------------------------------------------------------------------------------------
    def get(self, job_id: UUID, table: str = "ai_course_jobs", organization_id: UUID | None = None):
        """One job; with ``organization_id`` a job of another organization reads as absent."""
        sql = f"SELECT * FROM {_check_table(table)} WHERE id = %s"
        params: tuple = (job_id,)
        if organization_id is not None:
            sql += " AND organization_id = %s"
            params += (organization_id,)
        rows = self._rows(sql, params)
        return _MODELS[table](**rows[0]) if rows else None

    def list(
        self,
        table: str = "ai_course_jobs",
        *,
        organization_id: UUID | None = None,
        status: str | None = None,
        course_id: str | None = None,
        limit: int = 50,
    ) -> list[CourseJob] | list[MediaJob]:
        where, params = [], []
        for col, val in (("organization_id", organization_id), ("status", status), ("course_id", course_id)):
            if val is not None:
                where.append(f"{col} = %s")
                params.append(val)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(
            f"SELECT * FROM {_check_table(table)} {clause} ORDER BY created_at DESC LIMIT %s", (*params, limit)
        )
        model = _MODELS[table]
        return [model(**r) for r in rows]

    def events(self, job_id: UUID) -> list[JobEvent]:
        return [JobEvent(**r) for r in self._rows("SELECT * FROM job_events WHERE job_id = %s ORDER BY seq", (job_id,))]

    def depth(self) -> dict[str, dict[str, int]]:
        """Row counts by status for both tables (the runbook's first look)."""
        out: dict[str, dict[str, int]] = {}
        for table in JOB_TABLES:
            rows = self._rows(f"SELECT status, count(*) AS n FROM {table} GROUP BY status ORDER BY status")
            out[table] = {r["status"]: r["n"] for r in rows}
        return out
