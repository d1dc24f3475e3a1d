"""The bounded repair loop as one stage: repair rounds until the course validates or the bound is hit.

Shared by the in-memory orchestrator and the Dagster ``repair`` op, so both apply exactly the rules of
course-format.md (only failing items, bounded rounds, artifacts per round, ``validation_failed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import Course
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton
from ignite_dagster.course.validation import ContentGates, errors_of
from ignite_dagster.generation.types import GenerationDeps, Usage


@dataclass
class RepairOutcome:
    course: Course
    issues: list[Issue]
    rounds: int
    usage: Usage


async def repair_until_valid(
    draft: dict[str, Any],
    course: Course | None,
    issues: list[Issue],
    skeleton: Skeleton,
    request: CourseRequest,
    gates: ContentGates | None,
    deps: GenerationDeps,
    on_round=None,
) -> RepairOutcome:
    """Returns the valid course; raises GenerationFailed(validation_failed) when it cannot converge."""
    from ignite_dagster.generation.orchestrator import repair, validate_and_normalize, validation_failure

    usage = Usage()
    rounds = 0
    while errors_of(issues):
        if rounds >= deps.repair_rounds:
            raise validation_failure(deps, issues, rounds, f"errors remain after {rounds} repair round(s)")
        rounds += 1
        if on_round is not None:
            on_round(rounds)
        current = course.to_dict() if course is not None else draft
        repaired = await repair(current, issues, skeleton, request, deps, rounds)
        usage = usage + repaired.usage
        draft = repaired.course
        course, issues = validate_and_normalize(draft, skeleton, gates)
    assert course is not None
    return RepairOutcome(course=course, issues=issues, rounds=rounds, usage=usage)
