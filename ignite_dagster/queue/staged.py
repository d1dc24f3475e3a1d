"""Running a claimed job stage by stage: the discipline course and media workers share.

``StagedWorker.stage`` confirms the claim before a stage (progress is fenced by attempt, so one query
both reports the stage and proves the claim is held; a superseded worker stops before writing), records
a ``job_events`` row for its outcome, and turns an exception into the job's failure with a reason code
and the retryable flag the queue's backoff needs. Subclasses say how their own exceptions classify.
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

    @contextmanager
    def stage(self, work: Any, name: str, message: str | None = None) -> Iterator[None]:
        job, percent = work.job, self.stages[name]
        if self.lease.is_lost(job.id) or not self.queue.progress(
            job.id, self.table, job.attempt, name, percent, message or name.replace("_", " ")
        ):
            self.lease.check(job.id)  # marks the claim lost and raises LostClaim
        t0 = time.monotonic()
        try:
            yield
        except LostClaim as exc:
            self.queue.event(job.id, self.table, job.attempt, name, "error", message=str(exc),
                             meta={"reason_code": "lost_claim"})
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
            self.queue.event(job.id, self.table, job.attempt, name, "error", percent, msg[:2000],
                             {"reason_code": reason, "retryable": retryable})
            # an upstream Retry-After (provider errors carry it) is a floor under the queue's backoff
            raise self.fail(work, reason, f"{name}: {msg}", retryable, getattr(exc, "retry_after", None)) from exc
        ms = int((time.monotonic() - t0) * 1000)
        work.stage_ms[name] = ms
        self.queue.event(job.id, self.table, job.attempt, name, "success", percent, f"{name} done in {ms} ms")
