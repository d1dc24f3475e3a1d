"""Generate one course the way production does: submit the request, claim the job, run the course worker.

There is one generation chain (``CourseWorker``); tests that used to call an in-memory orchestrator now
go through this helper, so they test what runs. A stage failure surfaces as the engine's own
``GenerationFailed`` (the worker has already marked the job; ``job`` on the exception's ``job_row``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from ignite_dagster.config import Settings
from ignite_dagster.course.model import Course, parse_course
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course_jobs.submit import submit_course_request
from ignite_dagster.course_jobs.worker import CourseWork, CourseWorker
from ignite_dagster.queue import CourseJob, JobQueue
from ignite_dagster.queue.lease import Lease
from ignite_dagster.queue.staged import JobAborted
from ignite_dagster.storage.base import ObjectStore
from ignite_dagster.storage.keys import course_path
from ignite_dagster.storage.local import LocalObjectStore


@dataclass
class Generated:
    """A finished course: the stored document, its parsed model, the worker's state and the final job row."""

    course: Course
    doc: dict[str, Any]
    work: CourseWork
    job: CourseJob

    @property
    def usage(self):
        return self.work.usage

    @property
    def telemetry(self) -> SimpleNamespace:
        """Usage and repair rounds in one place, as the job's summary reports them."""
        u = self.work.usage
        return SimpleNamespace(calls=u.calls, tokens_in=u.tokens_in, tokens_out=u.tokens_out, cost_usd=u.cost_usd,
                               cache_hits=u.cache_hits, repair_rounds=self.work.repair_rounds)

    @property
    def repair_rounds(self) -> int:
        return self.work.repair_rounds

    @property
    def warnings(self) -> list[Any]:
        return [i for i in self.work.issues if i.severity == "warning"]


def generate(
    db_url: str,
    organization_id: UUID,
    request: CourseRequest | dict[str, Any],
    *,
    store: ObjectStore | None = None,
    storage_root: Path | None = None,
    llm: Any = None,
    packs: Any = None,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> Generated:
    """Run ``request`` through submit → claim → every worker stage; raise the stage's failure."""
    req = request if isinstance(request, CourseRequest) else CourseRequest.model_validate(request)
    if store is None:
        if storage_root is None:
            raise ValueError("generate() needs a store or a storage_root")
        store = LocalObjectStore(storage_root)
    queue = JobQueue(db_url)
    submitted = submit_course_request(queue, store, req, organization_id=organization_id)
    claimed = queue.claim_course_jobs("test-worker", limit=1)
    assert claimed and claimed[0].id == submitted.job.id, "the submitted job was not the one claimed"
    settings = settings or getattr(llm, "settings", None) or Settings()  # the model's settings say it is configured
    worker = CourseWorker(settings, queue, store, Lease(queue, 5.0), llm=llm, packs=packs)
    try:
        work = worker.process(claimed[0], now=now)
    except JobAborted as exc:
        cause = exc.__cause__
        if cause is not None:
            cause.job_row = queue.get(submitted.job.id)  # type: ignore[attr-defined]
            raise cause from exc
        raise
    doc = json.loads(store.get(course_path(req.course_id)).data)
    course, issues = parse_course(doc)
    assert course is not None, issues
    return Generated(course=course, doc=doc, work=work, job=queue.get(submitted.job.id))
