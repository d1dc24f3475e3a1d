"""The repair stage: bounded rounds that send only failing items back to the model.

Decisions (course-format.md):
* only errors that name an item are repairable; any other error (a missing study text, a course-level
  schema problem) fails at once — the model cannot patch those item by item;
* without a model nothing can repair, so errors fail the job at once (deterministic packs are expected
  to compile clean; an error there is a pack bug that must surface, not be patched);
* each round sends every failing item (in batches, see ``llm/item_repair``); rounds are bounded by
  ``deps.repair_rounds``;
* a validation failure is retryable only on the model path: a model answers differently on another
  attempt, a pack fails its own gates the same way every time. ``validation_issues.json`` says why.
* when every remaining error is a quality gate (``course/quality.py``) the reason is ``quality_failed``,
  not ``validation_failed``: the course is a valid document a teacher could not use. It is retryable
  once per job (``deps.quality_retryable``, decided by the worker): the same model, asked again without
  the answer cache, often writes a usable course (a small model's off-subject title or repeated group
  names come from one plan call), but a model that fails the gates twice will keep failing them, and
  further retries would only spend tokens. Course-level gates (group names, an off-subject title or
  study text) name no item, so they fail at once without a repair round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import Course
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton
from ignite_dagster.course.validation import ContentGates, errors_of, is_quality_failure
from ignite_dagster.generation.artifacts import codes_summary, issues_json, save_artifact
from ignite_dagster.generation.stages.validate_normalize import validate_and_normalize
from ignite_dagster.generation.types import FillResult, GenerationDeps, GenerationFailed, Usage


@dataclass
class RepairOutcome:
    course: Course
    issues: list[Issue]
    rounds: int
    usage: Usage


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
    """``validation_failed`` (or ``quality_failed`` when only quality gates fail) with the codes;
    ``validation_issues.json`` saved."""
    errors = errors_of(issues)
    quality = is_quality_failure(errors)
    reason = "quality_failed" if quality else "validation_failed"
    save_artifact(deps, "validation_issues.json",
                  {"repairRounds": rounds, "reason": why, "reasonCode": reason, "issues": issues_json(issues)})
    if quality:
        return GenerationFailed(
            reason, f"{why}; quality gates failed: {codes_summary(errors)}",
            retryable=deps.llm is not None and deps.quality_retryable, issues=errors,
        )
    return GenerationFailed(reason, f"{why}; errors: {codes_summary(errors)}", retryable=deps.llm is not None,
                            issues=errors)


async def repair_round(
    course_dict: dict[str, Any],
    issues: list[Issue],
    skeleton: Skeleton,
    request: CourseRequest,
    deps: GenerationDeps,
    round_no: int,
) -> FillResult:
    """One repair round: send every failing item back to the model.

    Raises ``validation_failed`` at once when an error names no item or when no model is configured.
    The model's answer is saved as ``repair_<round_no>.json``.
    """
    by_item, blocking = split_repairable(issues)
    if blocking:
        raise validation_failure(deps, issues, round_no - 1, "errors that name no item cannot be repaired")
    if not by_item:
        raise ValueError("repair called without errors")
    if deps.llm is None:
        raise validation_failure(
            deps, issues, round_no - 1, "the course has errors and no text model is configured to repair them"
        )
    chosen_ids = sorted(by_item)
    sent = [i for item_id in chosen_ids for i in by_item[item_id]]
    result: FillResult = await deps.llm.repair(course_dict, sent, skeleton, request)
    save_artifact(
        deps,
        f"repair_{round_no}.json",
        {"round": round_no, "itemIds": chosen_ids, "issues": issues_json(sent), "course": result.course},
    )
    return result


async def repair_until_valid(
    draft: dict[str, Any],
    course: Course | None,
    issues: list[Issue],
    skeleton: Skeleton,
    request: CourseRequest,
    gates: ContentGates | None,
    deps: GenerationDeps,
    on_round: Callable[[int], None] | None = None,
) -> RepairOutcome:
    """The valid course; raises GenerationFailed(validation_failed) when it cannot converge."""
    usage = Usage()
    rounds = 0
    try:
        while errors_of(issues):
            if rounds >= deps.repair_rounds:
                raise validation_failure(deps, issues, rounds, f"errors remain after {rounds} repair round(s)")
            rounds += 1
            if on_round is not None:
                on_round(rounds)
            current = course.to_dict() if course is not None else draft
            repaired = await repair_round(current, issues, skeleton, request, deps, rounds)
            usage = usage + repaired.usage
            draft = repaired.course
            course, issues = validate_and_normalize(draft, skeleton, gates, deps.quality)
    except GenerationFailed as exc:
        # what the rounds spent stays on the books, the failed round's own attempts included
        failed_round = getattr(exc, "usage", None)
        exc.usage = usage + failed_round if isinstance(failed_round, Usage) else usage  # type: ignore[attr-defined]
        raise
    assert course is not None
    return RepairOutcome(course=course, issues=issues, rounds=rounds, usage=usage)
