"""Running a claimed job stage by stage: the discipline course and media workers share.

``StagedWorker.stage`` confirms the claim before a stage (progress is fenced by attempt, so one query
both reports the stage and proves the claim is held; a superseded worker stops before writing), records
a ``job_events`` row for its outcome, and turns an exception into the job's failure with a reason code
and the retryable flag the queue's backoff needs. Subclasses say how their own exceptions classify.

A worker whose stages follow one another at once (``defers_success_events``) keeps a stage's success
event on the work (``unsent_events``) instead of writing it alone: the next stage's start writes it in the
same statement as its fenced progress (``JobQueue.start_stage``, sql/012), and the worker writes what is
left where no stage follows (``send_events``). Every event that is written goes through that list, so the
rows keep the order in which they were decided.

A *quiet* stage (``stage(..., quiet=True)``) writes no progress when it starts: for a stage that writes
nothing and takes milliseconds (validation; a repair with nothing to repair), whose start would be a
round trip of its own on the course's way to done and shows for too short a time to be read. Its
success or failure event is written as any stage's; the claim is confirmed by the next stage's start,
before anything is written.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar
from uuid import UUID

from ignite_dagster.config import Settings
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.errors import LostClaim
from ignite_dagster.queue.job_rows import UnsentEvent
from ignite_dagster.queue.lease import Lease
from ignite_dagster.queue.retry import STAGE_RETRYABLE
from ignite_dagster.storage.base import NotFound, ObjectStore, StorageError

log = logging.getLogger(__name__)


class JobAborted(RuntimeError):
    """The stage failed and the job row already says why (``new_status``: failed / dead_letter / None
    when the failure itself was fenced off)."""

    def __init__(self, job_id: UUID, reason_code: str, message: str, retryable: bool, new_status: str | None):
        super().__init__(f"job {job_id}: {reason_code}: {message}")
        self.job_id = job_id
        self.reason_code = reason_code
        self.message = message
        self.retryable = retryable
        self.new_status = new_status


# OS errors that mean the storage cannot be written or read right now (read-only or full disk, lost mount).
STORAGE_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EIO,
                            errno.ESTALE, errno.ENOTCONN})


def storage_failure(exc: Exception) -> tuple[str, str, bool] | None:
    """``storage_error`` (retryable) for a storage backend failure or a filesystem that refuses writes,
    so an operator sees the storage outage for what it is rather than an ``internal_error``. A missing
    object is a different problem (the caller classifies it)."""
    if isinstance(exc, NotFound):
        return None
    if isinstance(exc, StorageError) or (isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS):
        return "storage_error", f"{type(exc).__name__}: {exc}", "storage_error" in STAGE_RETRYABLE
    return None


class StagedWorker:
    table: ClassVar[str]
    stages: ClassVar[dict[str, int]]  # stage name -> progress percent when it starts
    # True: a stage's success event waits on ``work.unsent_events`` for the job's next statement (the work
    # must have that list, and the worker must ``send_events`` where no stage follows)
    defers_success_events: ClassVar[bool] = False

    def __init__(self, settings: Settings, queue: JobQueue, store: ObjectStore, lease: Lease):
        self.settings = settings
        self.queue = queue
        self.store = store
        self.lease = lease

    def classify(self, work: Any, exc: Exception) -> tuple[str, str, bool] | None:
        """(reason_code, message, retryable) for a known failure; None for an unexpected one."""
        return None

    def fail(self, work: Any, reason_code: str, message: str, retryable: bool,
             retry_after: float | None = None) -> JobAborted:
        job = work.job
        status = self.queue.fail(
            job.id, self.table, job.attempt, message, reason_code, retryable,
            backoff_base=timedelta(seconds=self.settings.backoff_base_seconds),
            backoff_cap=timedelta(seconds=self.settings.backoff_cap_seconds),
            retry_after=timedelta(seconds=retry_after) if retry_after else None,
        )
        self.lease.release(job.id)
        return JobAborted(job.id, reason_code, message, retryable, status)

    # -- events not written yet ---------------------------------------------------------------------
    def defer_event(self, work: Any, event: UnsentEvent) -> None:
        """Keep ``event`` for the job's next statement (written at once for a work that keeps no list)."""
        unsent = getattr(work, "unsent_events", None)
        if unsent is None:
            self.send_events(work, event)
        else:
            unsent.append(event)

    @staticmethod
    def take_unsent(work: Any) -> list[UnsentEvent]:
        """The work's unsent events, in order; the work keeps none after."""
        unsent = getattr(work, "unsent_events", None)
        if not unsent:
            return []
        taken = list(unsent)
        unsent.clear()
        return taken

    def send_events(self, work: Any, *events: UnsentEvent) -> None:
        """The work's unsent events, then ``events``, in one statement (none when there is nothing to
        write); best effort, as every event is."""
        job = work.job
        self.queue.add_events(job.id, self.table, job.attempt, [*self.take_unsent(work), *events])

    def _start(self, work: Any, name: str, percent: int, message: str) -> None:
        """The stage's fenced progress, carrying the unsent events; raises LostClaim when the claim is gone."""
        job = work.job
        unsent = self.take_unsent(work)
        if self.lease.is_lost(job.id):
            self.queue.add_events(job.id, self.table, job.attempt, unsent)
            self.lease.check(job.id)  # raises LostClaim
            return
        try:
            held = self.queue.start_stage(job.id, self.table, job.attempt, name, percent, message, unsent)
        except Exception:
            getattr(work, "unsent_events", []).extend(unsent)  # not written: they go with the next attempt to write
            raise
        if not held:
            self.lease.check(job.id)  # marks the claim lost and raises LostClaim

    @contextmanager
    def stage(self, work: Any, name: str, message: str | None = None, *, quiet: bool = False) -> Iterator[None]:
        job, percent = work.job, self.stages[name]
        if not quiet:
            self._start(work, name, percent, message or name.replace("_", " "))
        t0 = time.monotonic()
        try:
            yield
        except LostClaim as exc:
            self.send_events(work, UnsentEvent(name, "error", message=str(exc), meta={"reason_code": "lost_claim"}))
            self.lease.release(job.id)
            raise
        except JobAborted:
            raise
        except Exception as exc:
            known = self.classify(work, exc) or storage_failure(exc)
            reason, msg, retryable = known or ("internal_error", f"{type(exc).__name__}: {exc}",
                                               "internal_error" in STAGE_RETRYABLE)
            if known is None:
                log.exception("%s job %s: unexpected failure in %s", self.table, job.id, name)
            self.send_events(work, UnsentEvent(name, "error", percent, msg[:2000],
                                               {"reason_code": reason, "retryable": retryable}))
            # an upstream Retry-After (provider errors carry it) is a floor under the queue's backoff
            raise self.fail(work, reason, f"{name}: {msg}", retryable, getattr(exc, "retry_after", None)) from exc
        ms = int((time.monotonic() - t0) * 1000)
        work.stage_ms[name] = ms
        done = UnsentEvent(name, "success", percent, f"{name} done in {ms} ms")
        if self.defers_success_events:
            self.defer_event(work, done)
        else:
            self.send_events(work, done)
