"""Heartbeats for claimed jobs, fenced by attempt.

A run holds claims on several jobs; one background thread heartbeats all of them. When the database
refuses a heartbeat (the job went stale and was claimed again, or an operator requeued it), the claim is
marked lost and the next ``check`` raises ``LostClaim``: the worker stops without writing results.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from ignite_dagster.queue.client import JobQueue
from ignite_dagster.queue.errors import LostClaim

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    job_id: UUID
    table: str
    attempt: int


class Lease:
    def __init__(self, queue: JobQueue, interval_seconds: float):
        self._queue = queue
        self._interval = interval_seconds
        self._claims: dict[UUID, Claim] = {}
        self._lost: set[UUID] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, claim: Claim) -> None:
        with self._lock:
            self._claims[claim.job_id] = claim

    def release(self, job_id: UUID) -> None:
        with self._lock:
            self._claims.pop(job_id, None)

    def is_lost(self, job_id: UUID) -> bool:
        with self._lock:
            return job_id in self._lost

    def check(self, job_id: UUID) -> None:
        """Raise LostClaim unless the database confirms, now, that this attempt still holds the job."""
        with self._lock:
            claim = self._claims.get(job_id)
            lost = job_id in self._lost
        if claim is None or lost or not self._queue.heartbeat(claim.job_id, claim.table, claim.attempt):
            self._mark_lost(job_id)
            raise LostClaim(f"job {job_id} is no longer held by this attempt")

    def _mark_lost(self, job_id: UUID) -> None:
        with self._lock:
            self._lost.add(job_id)
            self._claims.pop(job_id, None)

    def beat_once(self) -> None:
        with self._lock:
            claims = list(self._claims.values())
        for claim in claims:
            try:
                if not self._queue.heartbeat(claim.job_id, claim.table, claim.attempt):
                    log.warning("heartbeat refused for job %s attempt %s: claim lost", claim.job_id, claim.attempt)
                    self._mark_lost(claim.job_id)
            except Exception as exc:  # noqa: BLE001 - a database blip must not kill the heartbeat thread
                log.warning("heartbeat for job %s failed: %s", claim.job_id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.beat_once()

    def start(self) -> Lease:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ignite-heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Lease:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- claims seen from outside the run that holds them (the daemon's sensor tick, the reconciler) -------
# A claim is made by a sensor before its run exists; until the run's process starts its Lease, the
# daemon vouches for it. These helpers are what the Dagster shell calls; they know nothing of Dagster.

ClaimRef = tuple[UUID, int]  # (job id, attempt)


def keep_alive(queue: JobQueue, table: str, claims: list[ClaimRef]) -> int:
    """Heartbeat claims of runs that are queued or starting (fenced by attempt); returns how many are held."""
    if not claims:
        return 0
    with queue.connection() as conn:
        row = conn.execute("SELECT keep_claims_alive(%s, %s::uuid[], %s::int[]) AS n",
                           (table, [c[0] for c in claims], [c[1] for c in claims])).fetchone()
    return int(row["n"] if isinstance(row, dict) else row[0])


def release_or_fail(queue: JobQueue, table: str, claim: ClaimRef, error: str, reason_code: str, *,
                    backoff_base: timedelta, backoff_cap: timedelta) -> str | None:
    """A dead or canceled run's claim: back to pending without spending a retry when no stage ran,
    otherwise failed (retryable, with backoff). Returns the new status; None when the claim was not held."""
    with queue.connection() as conn:
        row = conn.execute("SELECT release_or_fail_claim(%s, %s, %s, %s, %s, %s, %s) AS s",
                           (claim[0], table, claim[1], error[:4000], reason_code, backoff_base, backoff_cap)).fetchone()
    return row["s"] if isinstance(row, dict) else row[0]


def claim_rows(queue: JobQueue, table: str | None, job_ids: list[UUID]) -> dict[UUID, dict]:
    """The lifecycle columns of the given jobs (one query), keyed by job id; ``table`` None looks in
    both tables (a run's claims are all of one table, but a run of an asset job does not say which)."""
    if not job_ids:
        return {}
    tables = ("ai_course_jobs", "ai_media_jobs") if table is None else (table,)
    if not set(tables) <= {"ai_course_jobs", "ai_media_jobs"}:
        raise ValueError(f"invalid job table: {table}")
    cols = "id, status, attempt, progress_stage, last_heartbeat, completed_at, updated_at"
    sql = " UNION ALL ".join(f"SELECT {cols} FROM {t} WHERE id = ANY(%(ids)s::uuid[])" for t in tables)
    with queue.connection() as conn:
        rows = conn.execute(sql, {"ids": list(job_ids)}).fetchall()
    return {r["id"]: r for r in rows}


def last_sign_of_life(claims: list[ClaimRef], rows: dict[UUID, dict], started_at: datetime) -> datetime:
    """When the run holding ``claims`` last showed it was alive, as the queue saw it.

    Its own heartbeats (a processing, stale or released claim keeps the last one), the moment it finished
    a claim (done, failed), and its start. A claim taken over by a newer attempt tells nothing about this
    run. A live run heartbeats every claim it holds, and ends within seconds of finishing its last one,
    so a run whose last sign is older than a few heartbeats is gone."""
    signs = [started_at]
    for job_id, attempt in claims:
        row = rows.get(job_id)
        if row is None or row["attempt"] != attempt:
            continue
        if row["last_heartbeat"] is not None:
            signs.append(row["last_heartbeat"])
        if row["status"] == "done" and row["completed_at"] is not None:
            signs.append(row["completed_at"])
        elif row["status"] in ("failed", "dead_letter"):
            signs.append(row["updated_at"])
    return max(signs)
