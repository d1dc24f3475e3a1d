"""The generation pipeline: select_strategy → build_skeleton → fill → validate_normalize → repair.

Every stage is a plain function with typed inputs and outputs, so the Dagster layer can run each as an
op (own timing, logs, failure) and tests can call each alone; :func:`generate_course` chains them for
the CLI, the API's synchronous paths and tests.

Repair decisions:
* only errors that name an item are repairable; any other error (a missing study text, a course-level
  schema problem) fails at once — the model cannot patch those item by item;
* without a model nothing can repair, so errors fail the job at once (deterministic packs are expected
  to compile clean; an error there is a pack bug that must surface, not be patched);
* each round sends at most ``MAX_REPAIR_ITEMS`` failing items; rounds are bounded by
  ``deps.repair_rounds``;
* a validation failure is **not retryable**: the same request would spend the same money to meet the
  same limits; an operator can requeue after looking at ``validation_issues.json``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import Course, GenerationInfo, parse_course
from ignite_dagster.course.normalize import normalize_course
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton
from ignite_dagster.course.validation import ContentGates, errors_of, validate_course, warnings_of
from ignite_dagster.generation.deterministic import compile_pack
from ignite_dagster.generation.packs import ArithmeticPack, KnowledgePack, PackIndex, default_index
from ignite_dagster.generation.repair_loop import repair_until_valid
from ignite_dagster.generation.request import parse_request
from ignite_dagster.generation.skeleton import build_skeleton
from ignite_dagster.generation.strategy import MODEL_SETTINGS_HINT, select_strategy
from ignite_dagster.generation.types import (
    FillResult,
    GenerationDeps,
    GenerationFailed,
    GenerationResult,
    StrategyChoice,
    Telemetry,
    Usage,
)

MAX_REPAIR_ITEMS = 8
DETERMINISTIC_PROVIDER = "pack"

T = TypeVar("T")
AnyPack = ArithmeticPack | KnowledgePack


# ------------------------------------------------------------------------------------------------
# Debug artifacts


def save_artifact(deps: GenerationDeps, name: str, payload: Any) -> str | None:
    """Write ``<debug_prefix>/<name>`` as JSON when a store and prefix are configured; return the key."""
    if deps.store is None or not deps.debug_prefix:
        return None
    key = f"{deps.debug_prefix.rstrip('/')}/{name}"
    data = json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True, default=str).encode("utf-8")
    deps.store.put(key, data, content_type="application/json")
    return key


def _issues_json(issues: list[Issue]) -> list[dict[str, Any]]:
    return [i.model_dump() for i in issues]


def codes_summary(issues: list[Issue]) -> str:
    """``invalid_blank_count×2, math_incorrect`` — the codes a job error shows."""
    counts = Counter(i.code for i in issues)
    return ", ".join(f"{code}×{n}" if n > 1 else code for code, n in sorted(counts.items()))


# ------------------------------------------------------------------------------------------------
# Stage: fill


async def fill(
    skeleton: Skeleton,
    request: CourseRequest,
    choice: StrategyChoice,
    deps: GenerationDeps,
    pack: AnyPack | None = None,
) -> FillResult:
    """Produce the draft: compile the pack (deterministic) or ask the model (llm)."""
    if choice.kind == "deterministic":
        if pack is None or pack.pack_id != choice.pack_id:
            pack = default_index().get(choice.pack_id or "")
        if pack is None:
            raise GenerationFailed("no_pack", f"pack {choice.pack_id!r} is not installed", retryable=False)
        try:
            course = compile_pack(pack, skeleton, request)
        except ValueError as exc:
            raise GenerationFailed("invalid_request", str(exc), retryable=False) from exc
        return FillResult(course=course, usage=Usage(), provider=DETERMINISTIC_PROVIDER, model=None, prompt_version=None)
    if deps.llm is None:
        raise GenerationFailed("model_not_configured", f"the llm strategy needs a text model: {MODEL_SETTINGS_HINT}", retryable=False)
    return await deps.llm.fill(skeleton, request)


def fill_sync(
    skeleton: Skeleton, request: CourseRequest, choice: StrategyChoice, deps: GenerationDeps, pack: AnyPack | None = None
) -> FillResult:
    return asyncio.run(fill(skeleton, request, choice, deps, pack))


# ------------------------------------------------------------------------------------------------
# Stage: validate + normalise


def _with_structure(draft: dict[str, Any], skeleton: Skeleton | None) -> dict[str, Any]:
    """Structure the skeleton owns (ids, band, groups, levels) is supplied when a draft omits it.

    Content (title, texts, options) is never supplied: a draft without it fails validation.
    """
    if skeleton is None:
        return draft
    data = dict(draft)
    data.setdefault("id", skeleton.course_id)
    data.setdefault("subject", skeleton.subject)
    data.setdefault("gradeBand", skeleton.grade_band)
    data.setdefault("locale", skeleton.locale)
    data.setdefault("groups", [g.model_dump(mode="json", by_alias=True, exclude_none=True) for g in skeleton.groups])
    data.setdefault("levels", [lv.model_dump(mode="json", by_alias=True, exclude_none=True) for lv in skeleton.levels])
    return data


def validate_and_normalize(
    draft: dict[str, Any], skeleton: Skeleton | None, gates: ContentGates | None
) -> tuple[Course | None, list[Issue]]:
    """Parse, normalise, validate. ``(None, schema issues)`` when the draft cannot be loaded at all;
    otherwise the normalised course and all its issues (errors and warnings)."""
    course, issues = parse_course(_with_structure(draft, skeleton))
    if course is None:
        return None, issues
    course = normalize_course(course, skeleton)
    return course, validate_course(course, skeleton, gates)


# ------------------------------------------------------------------------------------------------
# Stage: repair


def split_repairable(issues: list[Issue]) -> tuple[dict[int, list[Issue]], list[Issue]]:
    """Errors by item id (repairable) and errors that name no item (not repairable)."""
    by_item: dict[int, list[Issue]] = {}
    blocking: list[Issue] = []
    for issue in errors_of(issues):
        if issue.item_id is None:
            blocking.append(issue)
        else:
            by_item.setdefault(issue.item_id, []).append(issue)
    return by_item, blocking


def validation_failure(deps: GenerationDeps, issues: list[Issue], rounds: int, why: str) -> GenerationFailed:
    """``validation_failed`` with the codes; ``validation_issues.json`` saved.

    Retryable only on the model path: a model answers differently on another attempt (repair calls are
    not cached), whereas a pack that fails its own gates fails the same way every time."""
    errors = errors_of(issues)
    save_artifact(deps, "validation_issues.json", {"repairRounds": rounds, "reason": why, "issues": _issues_json(issues)})
    return GenerationFailed(
        "validation_failed",
        f"{why}; errors: {codes_summary(errors)}",
        retryable=deps.llm is not None,
        issues=errors,
    )


async def repair(
    course_dict: dict[str, Any],
    issues: list[Issue],
    skeleton: Skeleton,
    request: CourseRequest,
    deps: GenerationDeps,
    round_no: int,
) -> FillResult:
    """One repair round: send the failing items (at most MAX_REPAIR_ITEMS) back to the model.

    Raises ``validation_failed`` at once when an error names no item or when no model is configured.
    The model's answer is saved as ``repair_<round_no>.json``.
    """
    by_item, blocking = split_repairable(issues)
    if blocking:
        raise validation_failure(deps, issues, round_no - 1, "errors that name no item cannot be repaired")
    if not by_item:
        raise ValueError("repair called without errors")
    if deps.llm is None:
        raise validation_failure(deps, issues, round_no - 1, "the course has errors and no text model is configured to repair them")
    chosen_ids = sorted(by_item)[:MAX_REPAIR_ITEMS]
    sent = [i for item_id in chosen_ids for i in by_item[item_id]]
    result: FillResult = await deps.llm.repair(course_dict, sent, skeleton, request)
    save_artifact(
        deps,
        f"repair_{round_no}.json",
        {"round": round_no, "itemIds": chosen_ids, "issues": _issues_json(sent), "course": result.course},
    )
    return result


# ------------------------------------------------------------------------------------------------
# The chain


class _Stages:
    """Times stages into telemetry and reports progress."""

    def __init__(self, deps: GenerationDeps, telemetry: Telemetry):
        self.deps = deps
        self.telemetry = telemetry

    def report(self, stage: str, percent: int, message: str) -> None:
        if self.deps.on_stage is not None:
            self.deps.on_stage(stage, percent, message)

    def _record(self, stage: str, started: float) -> None:
        elapsed = int((time.perf_counter() - started) * 1000)
        self.telemetry.stage_ms[stage] = self.telemetry.stage_ms.get(stage, 0) + elapsed

    def run(self, stage: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self._record(stage, started)

    async def run_async(self, stage: str, fn: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            return await fn()
        finally:
            self._record(stage, started)


def _created_at(now: datetime | None) -> str:
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def generate_course(
    request: CourseRequest | dict[str, Any],
    deps: GenerationDeps,
    *,
    job_id: str | None = None,
    attempt: int = 0,
    now: datetime | None = None,
    packs: PackIndex | None = None,
    model_configured: bool | None = None,
) -> GenerationResult:
    """Run every stage; a valid course or GenerationFailed (never a course with errors).

    ``model_configured`` defaults to ``deps.llm is not None``; ``now`` fixes ``generation.createdAt`` so
    deterministic runs are byte-identical.
    """
    req = parse_request(request)
    index = packs or default_index()
    configured = deps.llm is not None if model_configured is None else model_configured

    started = time.perf_counter()
    choice = select_strategy(req, index, configured)
    telemetry = Telemetry(strategy=choice.kind, pack_id=choice.pack_id)
    telemetry.stage_ms["select_strategy"] = int((time.perf_counter() - started) * 1000)
    stages = _Stages(deps, telemetry)
    stages.report("select_strategy", 5, f"strategy {choice.kind}: {choice.reason}")
    save_artifact(deps, "strategy.json", choice.model_dump(mode="json"))

    pack = index.get(choice.pack_id) if choice.pack_id else index.find_for(req)
    gates = pack.gates if pack is not None else None

    skeleton = stages.run("build_skeleton", lambda: build_skeleton(req, choice, pack, index))
    stages.report("build_skeleton", 10, f"{len(skeleton.items)} items in {len(skeleton.groups)} groups")
    save_artifact(deps, "skeleton.json", skeleton.model_dump(mode="json", by_alias=True))

    stages.report("fill", 15, "compiling the pack" if choice.kind == "deterministic" else "asking the model")
    filled = await stages.run_async("fill", lambda: fill(skeleton, req, choice, deps, pack))
    usage = filled.usage
    save_artifact(deps, "draft.json", filled.course)
    stages.report("fill", 60, "draft ready")

    draft = filled.course
    course, issues = stages.run("validate_normalize", lambda: validate_and_normalize(draft, skeleton, gates))
    stages.report("validate_normalize", 65, f"{len(errors_of(issues))} errors, {len(warnings_of(issues))} warnings")

    def on_round(round_no: int) -> None:
        stages.report("repair", min(90, 65 + round_no * 10), f"repair round {round_no}")

    outcome = await stages.run_async(
        "repair", lambda: repair_until_valid(draft, course, issues, skeleton, req, gates, deps, on_round=on_round)
    )
    course, issues, rounds = outcome.course, outcome.issues, outcome.rounds
    usage = usage + outcome.usage
    assert course is not None

    generation = GenerationInfo(
        job_id=job_id,
        attempt=attempt,
        strategy=choice.kind,
        provider=filled.provider,
        model=filled.model,
        pack_id=choice.pack_id,
        prompt_version=filled.prompt_version,
        created_at=_created_at(now),
    )
    course = course.model_copy(update={"generation": generation})
    telemetry = telemetry.model_copy(
        update={
            "provider": filled.provider,
            "model": filled.model,
            "prompt_version": filled.prompt_version,
            "calls": usage.calls,
            "tokens_in": usage.tokens_in,
            "tokens_out": usage.tokens_out,
            "cost_usd": usage.cost_usd,
            "cache_hits": usage.cache_hits,
            "repair_rounds": rounds,
        }
    )
    stages.report("done", 90, f"course valid with {len(warnings_of(issues))} warning(s)")
    return GenerationResult(course=course, issues=warnings_of(issues), telemetry=telemetry, strategy=choice)


def generate_course_sync(request: CourseRequest | dict[str, Any], deps: GenerationDeps | None = None, **kwargs: Any) -> GenerationResult:
    """:func:`generate_course` for callers without an event loop (CLI, tests)."""
    return asyncio.run(generate_course(request, deps or GenerationDeps(), **kwargs))
