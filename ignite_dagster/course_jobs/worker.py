"""Working one claimed course job, stage by stage, with progress, events, fencing and failure marking.

This is plain Python (no Dagster): the Dagster ops call one method each, so every stage appears in the
UI with its own timing and logs, while tests and benchmarks can drive the same code directly.

Every stage runs inside ``CourseWorker.stage``: it checks the claim (a lost claim stops the work before
anything is written), records progress and a ``job_events`` row, and turns an exception into the job's
failure with a reason code and the retryable flag the queue's backoff needs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ignite_dagster.config import Settings
from ignite_dagster.course_jobs.persist import (
    CourseOwnedElsewhere,
    check_course_owner,
    course_path,
    record_course,
    write_course_json,
)
from ignite_dagster.course_jobs.submit import debug_prefix, load_special_requests
from ignite_dagster.queue import CourseJob, JobQueue
from ignite_dagster.queue.lease import Claim, Lease
from ignite_dagster.queue.staged import StagedWorker
from ignite_dagster.storage.base import ObjectStore
from ignite_dagster.storage.cas import dump_json

log = logging.getLogger(__name__)
TABLE = "ai_course_jobs"

# stage name -> progress percent when it starts
STAGES = {
    "select_strategy": 5,
    "build_skeleton": 10,
    "fill": 20,
    "validate_normalize": 70,
    "repair": 80,
    "persist": 90,
}


@dataclass
class CourseWork:
    """Everything one job carries from stage to stage (kept in memory within one run)."""

    job: CourseJob
    request: Any
    choice: Any = None
    pack: Any = None
    skeleton: Any = None
    draft: Any = None
    course: Any = None
    issues: list[Any] = field(default_factory=list)
    usage: Any = None
    provider: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    repair_rounds: int = 0
    stage_ms: dict[str, int] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.job.course_id} (job {self.job.id}, attempt {self.job.attempt})"


class CourseWorker(StagedWorker):
    table = TABLE
    stages = STAGES

    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        store: ObjectStore,
        lease: Lease,
        *,
        connection: Callable[[], Any] | None = None,
        llm: Any = None,
    ):
        super().__init__(settings, queue, store, lease)
        self._llm = llm
        self._connection = connection or queue.connection

    # -- helpers ------------------------------------------------------------------------------------
    def llm(self):
        """The model client, built on first use: deterministic runs never import the openai SDK."""
        if self._llm is None and self.settings.model_configured:
            from ignite_dagster.generation.llm import LLMFiller

            self._llm = LLMFiller(self.settings, self.store)
        return self._llm

    def deps(self, work: CourseWork, on_stage=None):
        from ignite_dagster.generation.types import GenerationDeps

        return GenerationDeps(
            store=self.store,
            debug_prefix=debug_prefix(work.job.id),
            llm=self.llm(),
            repair_rounds=self.settings.repair_rounds,
            on_stage=on_stage,
        )

    def save_artifact(self, work: CourseWork, name: str, doc: Any) -> None:
        """Debug artifacts are best effort: losing one never fails a job."""
        try:
            self.store.put(f"{debug_prefix(work.job.id)}/{name}", dump_json(doc), content_type="application/json")
        except Exception as exc:  # noqa: BLE001
            log.warning("artifact %s for job %s not saved: %s", name, work.job.id, exc)

    def classify(self, work: CourseWork, exc: Exception) -> tuple[str, str, bool] | None:
        from ignite_dagster.generation.types import GenerationFailed

        if isinstance(exc, GenerationFailed):
            # the engine's message names the validation codes; validation_issues.json is already saved
            return exc.reason_code, exc.message, exc.retryable
        if isinstance(exc, CourseOwnedElsewhere):
            return exc.reason_code, str(exc), False
        return None

    # -- stages -------------------------------------------------------------------------------------
    def begin(self, job: CourseJob) -> CourseWork:
        """Rebuild the request from the job row (and its stored special requests) and take the lease."""
        from ignite_dagster.course.request import CourseRequest

        self.lease.add(Claim(job.id, TABLE, job.attempt))
        fields = {k: getattr(job, k) for k in ("course_id", "subject", "grade_band", "grade", "items_per_group",
                                              "mode", "levels_count", "study_texts_count", "wants_images", "strategy")}
        work = CourseWork(job=job, request=None)
        try:
            if job.has_special_requests:
                fields.update(load_special_requests(self.store, job.id))
            work.request = CourseRequest(**{k: v for k, v in fields.items() if v is not None})
        except Exception as exc:  # noqa: BLE001 - a job that cannot be read is failed, not retried blindly
            reason = "special_requests_missing" if job.has_special_requests else "invalid_request"
            raise self.fail(work, reason, f"cannot load request: {exc}", False) from exc
        # The pid tells an operator (and the crash test) which OS process works this attempt.
        self.queue.event(job.id, TABLE, job.attempt, "claimed", "info", 0,
                         f"worker {job.worker_id or '-'} attempt {job.attempt}", {"pid": os.getpid()})
        return work

    def select_strategy(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.packs import default_index
        from ignite_dagster.generation.strategy import select_strategy

        with self.stage(work, "select_strategy"):
            work.choice = select_strategy(work.request, default_index(), self.settings.model_configured)
            index = default_index()
            work.pack = index.get(work.choice.pack_id) if work.choice.pack_id else index.find_for(work.request)
        return work

    def build_skeleton(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.packs import default_index
        from ignite_dagster.generation.skeleton import build_skeleton

        with self.stage(work, "build_skeleton"):
            work.skeleton = build_skeleton(work.request, work.choice, work.pack, default_index())
        return work

    def fill(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.orchestrator import fill

        def on_stage(stage: str, percent: int, message: str) -> None:
            self.queue.progress(work.job.id, TABLE, work.job.attempt, stage, percent, message)

        with self.stage(work, "fill", f"fill ({work.choice.kind})"):
            result = asyncio.run(fill(work.skeleton, work.request, work.choice, self.deps(work, on_stage), work.pack))
            work.draft = result.course
            work.usage = result.usage
            work.provider, work.model, work.prompt_version = result.provider, result.model, result.prompt_version
        return work

    def validate_normalize(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.orchestrator import validate_and_normalize

        with self.stage(work, "validate_normalize"):
            gates = work.pack.gates if work.pack is not None else None
            work.course, work.issues = validate_and_normalize(work.draft, work.skeleton, gates)
        return work

    def repair(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.repair_loop import repair_until_valid

        with self.stage(work, "repair"):
            gates = work.pack.gates if work.pack is not None else None
            outcome = asyncio.run(
                repair_until_valid(work.draft, work.course, work.issues, work.skeleton, work.request, gates,
                                   self.deps(work))
            )
            work.course, work.issues, work.repair_rounds = outcome.course, outcome.issues, outcome.rounds
            if outcome.usage is not None and work.usage is not None:
                work.usage = work.usage + outcome.usage
        return work

    def persist(self, work: CourseWork, now: datetime | None = None) -> CourseWork:
        from ignite_dagster.course.model import GenerationInfo

        job = work.job
        with self.stage(work, "persist"):
            with self._connection() as conn:
                check_course_owner(conn, job.course_id, job.organization_id)
            work.course.generation = GenerationInfo(
                job_id=str(job.id), attempt=job.attempt, strategy=work.choice.kind, provider=work.provider,
                model=work.model, pack_id=work.choice.pack_id, prompt_version=work.prompt_version,
                created_at=(now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
            )
            doc, version, conflicts = write_course_json(
                self.store, work.course.to_dict(), guard=lambda: self.lease.check(job.id)
            )
            work.result = self._result(work, doc, conflicts)
            complete = ("SELECT complete_job(%s, %s, %s, %s)", (job.id, TABLE, job.attempt, _jsonb(work.result)))
            with self._connection() as conn:
                recorded = record_course(conn, job_id=job.id, organization_id=job.organization_id, course_doc=doc,
                                         complete_sql=complete, wants_images=job.wants_images)
            work.result["catalog_action"] = recorded.catalog_action
            work.result["media_jobs"] = [str(m) for m in recorded.media_jobs]
        self.save_artifact(work, "summary.json", work.result)
        self.lease.release(job.id)
        return work

    def _result(self, work: CourseWork, doc: dict, conflicts: int) -> dict[str, Any]:
        usage = work.usage
        warnings = [i.code for i in work.issues if getattr(i, "severity", "") == "warning"]
        summary = {
            "strategy": work.choice.kind, "packId": work.choice.pack_id, "reason": work.choice.reason,
            "groups": len(doc.get("groups", [])), "levels": len(doc.get("levels", [])),
            "items": len(doc.get("items", [])), "studyTexts": len(doc.get("studyTexts") or []),
            "warnings": warnings, "repairRounds": work.repair_rounds, "stageMs": work.stage_ms,
            "calls": getattr(usage, "calls", 0), "tokensIn": getattr(usage, "tokens_in", 0),
            "tokensOut": getattr(usage, "tokens_out", 0), "cacheHits": getattr(usage, "cache_hits", 0),
            "casConflicts": conflicts, "promptVersion": work.prompt_version,
        }
        tokens = (getattr(usage, "tokens_in", 0) or 0) + (getattr(usage, "tokens_out", 0) or 0)
        cost = getattr(usage, "cost_usd", None)
        return {
            "result_path": course_path(work.job.course_id),
            "provider": work.provider, "model": work.model, "tokens": tokens,
            "cost_usd": str(cost) if cost is not None else None,
            "latency_ms": work.stage_ms.get("fill"),
            "generation_duration_ms": sum(work.stage_ms.values()),
            "summary": summary,
        }

    def process(self, job: CourseJob) -> CourseWork:
        """All stages in order: what one Dagster run does per course, without Dagster."""
        work = self.begin(job)
        for step in (self.select_strategy, self.build_skeleton, self.fill, self.validate_normalize, self.repair,
                     self.persist):
            work = step(work)
        return work


def _jsonb(doc: dict) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(json.loads(json.dumps(doc, default=str)))
