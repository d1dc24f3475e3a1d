"""Heartbeats for claimed jobs, fenced by attempt.

A run holds claims on several jobs; one background thread heartbeats all of them. When the database
refuses a heartbeat (the job went stale and was claimed again, or an operator requeued it), the claim is
marked lost and the next ``check`` raises ``LostClaim``: the worker stops without writing results.

This module is the run's own heartbeat thread; claims seen from outside the run (the daemon vouching for
runs not started yet, handing back a dead run's claims) are ``JobQueue`` methods, and how a run's last
sign of life is judged is ``liveness.py``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
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
        """Heartbeat every claim of the run in one statement per table (a run's claims are of one table)."""
        with self._lock:
            claims = list(self._claims.values())
        by_table: dict[str, list[Claim]] = {}
        for claim in claims:
            by_table.setdefault(claim.table, []).append(claim)
        for table, group in by_table.items():
            try:
                held = self._queue.heartbeat_claims(table, [(c.job_id, c.attempt) for c in group])
            except Exception as exc:  # noqa: BLE001 - a database blip must not kill the heartbeat thread
                log.warning("heartbeat for %d %s claim(s) failed: %s", len(group), table, exc)
                continue
            for claim in group:
                if claim.job_id not in held:
                    log.warning("heartbeat refused for job %s attempt %s: claim lost", claim.job_id, claim.attempt)
                    self._mark_lost(claim.job_id)

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
