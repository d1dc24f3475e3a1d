"""The run's progress writer: fill progress of every course of a run, written in one statement as soon
as the previous write returns.

Why: a model fill moves its job's progress with every answered call ("items 5/12"), and those calls
are answered on the one event loop all courses of a run share (``generation/llm/background``). A
statement per answer, made on that loop, held every course's calls up for a round trip each: ten
courses answer ~70 calls in about a second. Here ``refine`` only records the latest progress of a job
and wakes a writer thread; the thread writes whatever is pending in one statement
(``JobQueue.refine_progress``), then looks again. When answers are rare each is written at once; when
they come fast they share a statement and intermediate figures of one job are skipped (the latest
wins), so the statements per second stay bounded by the database's own pace, not the model's.

What it may write is fenced in SQL (sql/013): only while the attempt holds the job, only within the
stage the figure belongs to and never backwards in it, so a refinement that lands after the worker
moved to the next stage changes nothing. Stage transitions and events stay on the worker's own
statements (``StagedWorker``); this is for figures within a stage. Best effort, like events: a failed
write is logged and the next refinement is written again.
"""

from __future__ import annotations

import logging
import threading
from uuid import UUID

from ignite_dagster.queue.client import JobQueue

log = logging.getLogger(__name__)

Key = tuple[str, UUID]  # (table, job id)


class ProgressWriter:
    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._pending: dict[Key, tuple[int, str, int, str | None]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._writing = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def refine(self, table: str, job_id: UUID, attempt: int, stage: str, percent: int, message: str | None) -> None:
        """Record the job's latest progress within ``stage``; it is written soon, with every other pending one."""
        with self._lock:
            if self._closed:
                raise RuntimeError("ProgressWriter used after close")
            self._pending[(table, job_id)] = (attempt, stage, percent, message)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ignite-progress", daemon=True)
                self._thread.start()
            self._wake.notify()

    def flush(self) -> None:
        """Wait until every refinement recorded so far is written (``close`` writes them too, then stops)."""
        with self._lock:
            while self._pending or self._writing:
                self._wake.wait()

    def close(self) -> None:
        """Write what is pending, then stop the thread."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:  # closed and nothing left
                    return
                batch, self._pending = self._pending, {}
                self._writing = True
            try:
                self._write(batch)
            finally:
                with self._lock:
                    self._writing = False
                    self._wake.notify_all()

    def _write(self, batch: dict[Key, tuple[int, str, int, str | None]]) -> None:
        by_table: dict[str, list[tuple[UUID, int, str, int, str | None]]] = {}
        for (table, job_id), (attempt, stage, percent, message) in batch.items():
            by_table.setdefault(table, []).append((job_id, attempt, stage, percent, message))
        for table, updates in by_table.items():
            try:
                self._queue.refine_progress(table, updates)
            except Exception as exc:  # noqa: BLE001 - progress is best effort; the next refinement tries again
                log.warning("progress of %d %s job(s) not written: %s", len(updates), table, exc)
