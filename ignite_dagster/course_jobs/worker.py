"""Working one claimed course job, stage by stage, with progress, events, fencing and failure marking.

This is plain Python (no Dagster): the Dagster ops call ``begin`` + ``prepare`` (strategy and skeleton)
and ``finish`` (fill → validate → repair → persist), while tests and benchmarks drive the same code
directly (``process``).

**Each course is finished as soon as its own fill is done.** On the model path ``prepare`` hands the
course's ``finish`` to the run's background service (``generation/llm/background``): a worker thread
runs the fill (its calls overlap every other course's on one shared client) and then, at once, that
course's validation, repair and persist. Nothing waits for the other courses of the run: the in-process
executor runs one step at a time, so a per-stage op layout would validate and persist no course before
the last fill ended. The ``finish_courses`` step only collects the outcomes (``in_completion_order``)
and reports each course to Dagster as soon as it is done.

During the fill the job's progress moves from 20 % to 70 % with every answered call ("plan 1/1, study
texts 2/2, items 5/12"), and the fill's time is the generation's own (first call to last answer).

Every stage runs inside ``CourseWorker.stage``: it checks the claim (a lost claim stops the work before
anything is written), records progress and a ``job_events`` row, and turns an exception into the job's
failure with a reason code and the retryable flag the queue's backoff needs.

The course's own round trips are few (issue 23): the claimed event and each stage's success event ride on
the next stage's start (one statement: the events, then the fenced progress), ``prepare`` writes what its
stages left before the course's finish may run elsewhere, and the last stage's event goes with the
completion's bookkeeping (``record_final_spend``). ``tests/integration/test_round_trips.py`` counts them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from ignite_dagster.config import Settings
from ignite_dagster.course_jobs.persist import (
    CourseOwnedElsewhere,
    check_course_owner,
    record_course,
    write_course_json,
)
from ignite_dagster.course_jobs.stages import STAGE_PERCENT
from ignite_dagster.course_jobs.submit import load_special_requests
from ignite_dagster.queue import CourseJob, JobQueue
from ignite_dagster.queue.job_rows import UnsentEvent, add_attempt_spend, complete_job, set_cost_known
from ignite_dagster.queue.lease import Claim, Lease
from ignite_dagster.queue.progress import ProgressWriter
from ignite_dagster.queue.staged import StagedWorker
from ignite_dagster.storage.base import ObjectStore
from ignite_dagster.storage.keys import course_path, debug_prefix

log = logging.getLogger(__name__)
TABLE = "ai_course_jobs"

# stage name -> progress percent when it starts, in order (the one list: course_jobs/stages.py)
STAGES = STAGE_PERCENT


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
    stored: dict[str, Any] | None = None  # the course.json document persist wrote (its checks read it)
    report: Any = None  # what the caller's on_persisted built from the finished course (a run: its events)
    pending: Any = None  # the course's finish (fill → persist) running in the background (a Future of CourseWork)
    error: BaseException | None = None  # begin/prepare failed (the job row already says why); collect raises it
    unsent_events: list[UnsentEvent] = field(default_factory=list)  # for the job's next statement (StagedWorker)
    # debug artifacts of prepare not yet written: (name, a function giving the document); see save_artifacts
    unsaved_artifacts: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.job.course_id} (job {self.job.id}, attempt {self.job.attempt})"


class CourseWorker(StagedWorker):
    table = TABLE
    stages = STAGES
    defers_success_events = True  # the stages follow one another; prepare and persist write what is left

    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        store: ObjectStore,
        lease: Lease,
        *,
        connection: Callable[[], Any] | None = None,
        llm: Any = None,
        packs: Any = None,
        fills: Any = None,
        progress: ProgressWriter | None = None,
        on_persisted: Callable[[CourseWork], None] | None = None,
    ):
        super().__init__(settings, queue, store, lease)
        # the run's progress writer: a fill's per-answer figures are written in batches, off the model
        # loop (None: each is written at once, by the thread that reports it)
        self._progress = progress
        self._llm = llm
        self._connection = connection or queue.connection
        self._packs = packs
        # BackgroundFills shared by the courses of a run, or a callable returning it on first use (None: the
        # fill runs inside its own stage)
        self._fills = fills
        # the caller's work on a persisted course, run where the course finished (a run builds the
        # course's report there, on the course's own thread, not one course after another on the
        # thread that reports them); best effort: what it does not set, the caller builds later
        self._on_persisted = on_persisted

    @property
    def packs(self):
        """The installed packs (a test may hand in its own index)."""
        if self._packs is None:
            from ignite_dagster.generation.packs import default_index

            self._packs = default_index()
        return self._packs

    # -- helpers ------------------------------------------------------------------------------------
    def llm(self):
        """The model client, built on first use: deterministic runs never import the openai SDK."""
        if self._llm is None and self.settings.model_configured:
            from ignite_dagster.generation.llm import ModelWriter

            self._llm = ModelWriter(self.settings, self.store)
        return self._llm

    def deps(self, work: CourseWork, on_stage=None, on_progress=None):
        from ignite_dagster.course.quality import QualityThresholds
        from ignite_dagster.generation.types import GenerationDeps

        return GenerationDeps(
            store=self.store,
            debug_prefix=debug_prefix(work.job.id),
            llm=self.llm(),
            repair_rounds=self.settings.repair_rounds,
            on_stage=on_stage,
            quality=QualityThresholds.from_settings(self.settings),
            quality_retryable=not self.after_quality_failure(work),
            on_progress=on_progress,
            use_cache=not self.after_quality_failure(work),
        )

    @staticmethod
    def after_quality_failure(work: CourseWork) -> bool:
        """The previous attempt ended ``quality_failed``: this is the one retry the job gets for it, and it
        asks the model afresh (the cached answers are the ones that failed)."""
        return work.job.reason_code == "quality_failed"

    def save_artifact(self, work: CourseWork, name: str, doc: Any) -> None:
        from ignite_dagster.generation.artifacts import save_artifact

        self.best_effort(save_artifact, self.deps(work), name, doc)

    def defer_artifact(self, work: CourseWork, name: str, doc: Callable[[], Any]) -> None:
        """Keep a debug artifact of prepare for ``save_artifacts``: prepare runs on the run's one thread,
        course after course, and each artifact it wrote there (a JSON dump and a storage write, 2.3 ms
        CPU measured) delayed every later course's first model call; a course finishing in the
        background writes them on its own thread while its model calls are in flight."""
        work.unsaved_artifacts.append((name, doc))

    def save_artifacts(self, work: CourseWork) -> None:
        """Write the deferred artifacts (best effort, each once)."""
        pending, work.unsaved_artifacts = work.unsaved_artifacts, []
        for name, doc in pending:
            self.best_effort(self._save_artifact_doc, work, name, doc)

    def _save_artifact_doc(self, work: CourseWork, name: str, doc: Callable[[], Any]) -> None:
        from ignite_dagster.generation.artifacts import save_artifact

        save_artifact(self.deps(work), name, doc())

    @staticmethod
    def best_effort(fn: Callable[..., Any], *args: Any) -> None:
        """Debug artifacts are best effort: losing one never fails a job."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001
            log.warning("debug artifact not saved (%s): %s", args[1] if len(args) > 1 else fn.__name__, exc)

    def classify(self, work: CourseWork, exc: Exception) -> tuple[str, str, bool] | None:
        from ignite_dagster.generation.types import GenerationFailed

        if isinstance(exc, GenerationFailed):
            # the engine's message names the validation codes; validation_issues.json is already saved
            self.record_spend(work, getattr(exc, "usage", None))
            return exc.reason_code, exc.message, exc.retryable
        if isinstance(exc, CourseOwnedElsewhere):
            return exc.reason_code, str(exc), False
        return None

    # -- stages -------------------------------------------------------------------------------------
    def begin(self, job: CourseJob) -> CourseWork:
        """Rebuild the request from the job row (and its stored special requests) and take the lease."""
        from ignite_dagster.course.request import CourseRequest

        self.lease.add(Claim(job.id, TABLE, job.attempt))
        # Every request field has a column (notes/study text excepted: they come from storage below).
        fields = {k: getattr(job, k) for k in CourseRequest.column_names()}
        work = CourseWork(job=job, request=None)
        try:
            if job.has_special_requests:
                fields.update(load_special_requests(self.store, job.id))
            work.request = CourseRequest(**{k: v for k, v in fields.items() if v is not None})
        except Exception as exc:  # noqa: BLE001 - a job that cannot be read is failed, not retried blindly
            reason = "special_requests_missing" if job.has_special_requests else "invalid_request"
            raise self.fail(work, reason, f"cannot load request: {exc}", False) from exc
        # The pid tells an operator (and the crash test) which OS process works this attempt; the event is
        # written with the first stage's start (every caller starts one at once: prepare, process).
        self.defer_event(work, UnsentEvent("claimed", "info", 0, f"worker {job.worker_id or '-'} attempt {job.attempt}",
                                           {"pid": os.getpid()}))
        return work

    def select_strategy(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.stages.select_strategy import select_strategy

        with self.stage(work, "select_strategy"):
            index = self.packs
            work.choice = select_strategy(work.request, index, self.settings.model_configured)
            if work.choice.pack_id:
                work.pack = index.get(work.choice.pack_id)
            else:  # the model path borrows a pack's structure (exact arithmetic) only for the band it was written for
                found = index.find_for(work.request)
                work.pack = found if found is not None and found.serves_band(work.request) else None
        choice = work.choice
        self.defer_artifact(work, "strategy.json", lambda: choice.model_dump(mode="json"))
        if work.choice.kind == "llm":
            self.check_org_budget(work)
        return work

    def check_org_budget(self, work: CourseWork) -> None:
        """Before the model spends anything: an organization whose daily budget is spent gets this job
        failed as ``budget_exhausted`` until the next UTC day, without spending a retry (sql/007
        ``defer_job_budget``); other organizations' jobs are untouched."""
        from ignite_dagster.budget import OrgBudgetExhausted, org_budget
        from ignite_dagster.queue.staged import JobAborted

        budget = org_budget(self.settings)
        if not budget.limited:
            return
        job = work.job
        try:
            with self._connection() as conn:
                budget.check(conn, job.organization_id)
        except OrgBudgetExhausted as exc:
            self.send_events(work)  # select_strategy's success first: the job's events keep their order
            log.warning("job %s: %s", job.id, exc.message)
            self.queue.event(job.id, TABLE, job.attempt, "select_strategy", "error", STAGES["select_strategy"],
                             exc.message, {"reason_code": exc.reason_code, "retry_at": exc.until.isoformat()})
            status = self.queue.defer_budget_exhausted(job.id, job.attempt, exc.message, exc.until)
            self.lease.release(job.id)
            raise JobAborted(job.id, exc.reason_code, exc.message, True, status) from None

    def build_skeleton(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.stages.build_skeleton import build_skeleton

        with self.stage(work, "build_skeleton"):
            work.skeleton = skeleton = build_skeleton(work.request, work.choice, work.pack, self.packs)
        # the skeleton as built (the fill's plan later names a new one; this object is not changed)
        self.defer_artifact(work, "skeleton.json", lambda: skeleton.model_dump(mode="json", by_alias=True))
        return work

    def fills(self):
        """The run's background service (None: every stage runs where it is called)."""
        return self._fills() if callable(self._fills) else self._fills

    def prepare(self, work: CourseWork) -> CourseWork:
        """Strategy and skeleton, then, on the model path, the rest of the course started in the background
        (``start``). A failure is kept on ``work.error`` (the job row already says why) so the course's
        own step reports it."""
        try:
            work = self.build_skeleton(self.select_strategy(work))
        except Exception as exc:  # noqa: BLE001 - JobAborted, LostClaim: raised again by collect
            work.error = exc
        # build_skeleton's success now, not with the fill's start: the finish may wait (a later step, a busy
        # background service), and must not race this thread for the list
        self.send_events(work)
        if work.error is None:
            try:
                work = self.start(work)
            except Exception as exc:  # noqa: BLE001 - raised again by collect
                work.error = exc
        if work.pending is None:  # not finishing in the background: its artifacts are written here, now
            self.save_artifacts(work)
        return work

    def begin_and_prepare(self, job: CourseJob) -> CourseWork:
        """``begin`` + ``prepare`` that never raise: a job that cannot even begin comes back with its
        failure on ``work.error`` (the job row already says why), so it is reported like any other failed
        course (``collect`` raises it)."""
        try:
            work = self.begin(job)
        except Exception as exc:  # noqa: BLE001 - JobAborted, LostClaim, a lease that cannot be taken
            return CourseWork(job=job, request=None, error=exc)
        return self.prepare(work)

    def start(self, work: CourseWork) -> CourseWork:
        """Hand the course's ``finish`` (fill → validate → repair → persist) to the background service as
        soon as its skeleton exists: its fill overlaps the other courses' and the course is persisted the
        moment its own fill and checks are done. Without a service (or for a pack) nothing happens and
        ``finish`` runs where it is called."""
        if work.choice is None or work.choice.kind != "llm":
            return work
        fills = self.fills()
        if fills is not None:
            work.pending = fills.run(self.finish, work)
        return work

    def finish(self, work: CourseWork) -> CourseWork:
        """Fill, validate, repair and persist one course."""
        try:
            for step in (self.fill, self.validate_normalize, self.repair):
                work = step(work)
        finally:
            self.save_artifacts(work)  # prepare's, if the fill did not get to write them
        work = self.persist(work)
        if self._on_persisted is not None:
            try:
                self._on_persisted(work)
            except Exception as exc:  # noqa: BLE001 - the course is done; its report is built again later
                log.warning("job %s: on_persisted failed (%s); reported without it", work.job.id, exc)
        return work

    def collect(self, work: CourseWork) -> CourseWork:
        """The finished course: the background outcome, or ``finish`` run here (raises the course's failure)."""
        if work.error is not None:
            raise work.error
        if work.pending is not None:
            pending, work.pending = work.pending, None
            return pending.result()
        return self.finish(work)

    def in_completion_order(self, works: Iterable[CourseWork]) -> Iterator[tuple[CourseWork, CourseWork | Exception]]:
        """``(work, the finished work or its failure)`` for every course, in the order they are done, not
        the plan's: one run's courses are reported as each finishes, never behind a slower one planned
        before it. Those finishing in the background count when their future completes; the others
        (packs, failed preparations) are ready at once and are finished here, each after the background
        courses already done."""
        works = list(works)
        background = {w.pending: w for w in works if w.pending is not None}
        here = [w for w in works if w.pending is None]
        while background or here:
            done = [f for f in background if f.done()]
            if not done and not here:
                ready, _ = concurrent.futures.wait(background, return_when=concurrent.futures.FIRST_COMPLETED)
                done = [f for f in background if f in ready]  # plan order among those done together
            for work in [background.pop(f) for f in done] or [here.pop(0)]:
                try:
                    yield work, self.collect(work)
                except Exception as exc:  # noqa: BLE001 - the course's failure, reported with the others
                    yield work, exc

    def fill(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.stages.fill import fill

        job = work.job
        span = STAGES["validate_normalize"] - STAGES["fill"]

        def on_stage(stage: str, percent: int, message: str) -> None:
            self.queue.progress(job.id, TABLE, job.attempt, stage, percent, message)

        def on_progress(done: int, total: int, message: str) -> None:
            # 20 % → 70 % with the answered calls; fenced by attempt like every progress write
            percent = min(STAGES["fill"] + (span * done) // max(total, 1), STAGES["validate_normalize"] - 1)
            if self._progress is not None:  # called on the model loop every course shares: never wait there
                self._progress.refine(TABLE, job.id, job.attempt, "fill", percent, message)
            else:
                self.queue.progress(job.id, TABLE, job.attempt, "fill", percent, message)

        with self.stage(work, "fill", f"fill ({work.choice.kind})"):
            deps = self.deps(work, on_stage, on_progress)
            fills = self.fills() if work.choice.kind == "llm" else None
            if fills is not None:  # the run's shared client: this course's calls overlap the others'
                future = fills.submit(work.skeleton, work.request, on_progress=on_progress, use_cache=deps.use_cache,
                                      progress_on_loop=self._progress is not None)  # refine() never blocks
                self.save_artifacts(work)  # prepare's, while the model answers
                result = future.result()  # the fill's result or its coded failure
            else:
                self.save_artifacts(work)  # prepare's (process(): none were written yet)
                result = asyncio.run(fill(work.skeleton, work.request, work.choice, deps, work.pack))
            self.take_fill(work, result)
        if result.generation_ms is not None:
            work.stage_ms["fill"] = result.generation_ms  # first call → last answer, not this step's wait
        return work

    def take_fill(self, work: CourseWork, result: Any) -> None:
        """Keep a fill's draft (and the skeleton as its plan named it) and save the debug artifacts."""
        work.draft = result.course
        work.usage = result.usage
        work.provider, work.model, work.prompt_version = result.provider, result.model, result.prompt_version
        if result.skeleton is not None:
            work.skeleton = result.skeleton
        if result.plan is not None:
            self.save_artifact(work, "plan.json", result.plan)
        self.save_artifact(work, "draft.json", work.draft)
        return work

    def validate_normalize(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.stages.validate_normalize import validate_and_normalize

        with self.stage(work, "validate_normalize", quiet=True):  # pure CPU, milliseconds
            gates = work.pack.gates if work.pack is not None else None
            work.course, work.issues = validate_and_normalize(work.draft, work.skeleton, gates,
                                                              self.deps(work).quality)
        return work

    def repair(self, work: CourseWork) -> CourseWork:
        from ignite_dagster.generation.stages.repair import repair_until_valid

        def on_round(round_no: int) -> None:
            percent = min(STAGES["persist"] - 1, STAGES["repair"] + round_no)
            self.queue.progress(work.job.id, TABLE, work.job.attempt, "repair", percent, f"repair round {round_no}")

        from ignite_dagster.course.validation import errors_of

        # nothing to repair: the stage writes and spends nothing, its start would only be a round trip
        with self.stage(work, "repair", quiet=not errors_of(work.issues)):
            gates = work.pack.gates if work.pack is not None else None
            outcome = asyncio.run(
                repair_until_valid(work.draft, work.course, work.issues, work.skeleton, work.request, gates,
                                   self.deps(work), on_round=on_round)
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
            work.stored = doc
            work.result = self._result(work, doc, conflicts)
            with self._connection() as conn:
                recorded = record_course(conn, job_id=job.id, organization_id=job.organization_id, course_doc=doc,
                                         complete=partial(complete_job, job_id=job.id, table=TABLE,
                                                          attempt=job.attempt, result=work.result),
                                         wants_images=job.wants_images)
            work.result["catalog_action"] = recorded.catalog_action
            work.result["media_jobs"] = [str(m) for m in recorded.media_jobs]
        self.record_final_spend(work)
        self.save_artifact(work, "summary.json", work.result)
        self.lease.release(job.id)
        return work

    def record_spend(self, work: CourseWork, failed_usage: Any) -> None:
        """Add what this failed attempt spent (earlier stages plus the failing one) to the job's books.

        ``tokens`` and ``cost_usd`` on the job are the job's spend over all its attempts: a model call
        that was billed is never lost because its attempt failed. Fenced by attempt. Best effort: the
        failure itself must still be recorded if this write fails."""
        spent = work.usage
        if failed_usage is not None:
            spent = failed_usage if spent is None else spent + failed_usage
        if spent is None or not getattr(spent, "calls", 0):
            return
        tokens = (spent.tokens_in or 0) + (spent.tokens_out or 0)
        try:
            with self._connection() as conn:
                # an unknown price makes the job's cost unknown for good (NULL + cost_known false), never 0
                add_attempt_spend(conn, work.job.id, work.job.attempt, tokens, spent.cost_usd)
                self._record_org_usage(conn, work, spent)
        except Exception as exc:  # noqa: BLE001
            log.warning("spend of job %s attempt %s not recorded: %s", work.job.id, work.job.attempt, exc)
        work.usage = None  # recorded once

    def record_final_spend(self, work: CourseWork) -> None:
        """After completion: the job's ``cost_known`` column and the organization's day get the last
        attempt's spend (earlier attempts were added by ``record_spend``), and the job's unsent events
        (persist's success) go with the ``cost_known`` statement. Best effort, like artifacts: the course is
        done either way."""
        events = self.take_unsent(work)  # persist's success: written by the same statement
        try:
            with self._connection() as conn:
                set_cost_known(conn, work.job.id, work.job.attempt,
                               bool(work.result.get("summary", {}).get("costKnown")), events)
                events = []
                if work.usage is not None and getattr(work.usage, "calls", 0):
                    self._record_org_usage(conn, work, work.usage)
        except Exception as exc:  # noqa: BLE001
            log.warning("usage of job %s attempt %s not recorded: %s", work.job.id, work.job.attempt, exc)
            self.send_events(work, *events)

    @staticmethod
    def _record_org_usage(conn: Any, work: CourseWork, spent: Any) -> None:
        """Add one attempt's model spend to the organization's day (``ignite usage``, the daily budget)."""
        from ignite_dagster.budget import record_org_usage

        calls = getattr(spent, "calls", 0) or 0
        if not calls:
            return
        tokens = (spent.tokens_in or 0) + (spent.tokens_out or 0)
        if spent.cost_usd is None:
            log.warning("job %s attempt %s: cost unknown (no price in IGNITE_LLM_PRICES for %s, or no usage "
                        "reported); recorded as unknown, not 0", work.job.id, work.job.attempt, work.model)
        record_org_usage(conn, work.job.organization_id, calls, tokens, spent.cost_usd)

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
        # the job's books cover every attempt: earlier failed attempts' spend is already on the row
        tokens = (getattr(usage, "tokens_in", 0) or 0) + (getattr(usage, "tokens_out", 0) or 0) + (work.job.tokens or 0)
        # cost is known only when this attempt's calls and every earlier attempt's were priced: unknown
        # is None (and summary.costKnown false), never a partial sum or 0
        cost = getattr(usage, "cost_usd", None) if usage is not None else Decimal(0)
        if work.job.cost_known is False:
            cost = None
        elif cost is not None and work.job.cost_usd:
            cost = cost + work.job.cost_usd
        summary["costKnown"] = cost is not None
        return {
            "result_path": course_path(work.job.course_id),
            "provider": work.provider, "model": work.model, "tokens": tokens,
            "cost_usd": str(cost) if cost is not None else None,
            # the fill's own time (first call → last answer) and the course's generation stages summed
            "latency_ms": work.stage_ms.get("fill"),
            "generation_duration_ms": sum(work.stage_ms.values()),
            "summary": summary,
        }

    def process(self, job: CourseJob, now: datetime | None = None) -> CourseWork:
        """All stages in order: what one Dagster run does per course, without Dagster. ``now`` fixes
        ``generation.createdAt`` (deterministic courses are then byte-identical)."""
        work = self.begin(job)
        try:
            work = self.build_skeleton(self.select_strategy(work))
            for step in (self.fill, self.validate_normalize, self.repair):
                work = step(work)
            return self.persist(work, now)
        finally:
            self.save_artifacts(work)  # prepare's (a failed prepare's too)
