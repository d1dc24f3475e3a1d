"""The shapes the model must return (sent as strict JSON-schema structured outputs).

Why so loose: the schemas carry no length or count constraints. Strict structured outputs support only
a subset of JSON Schema, and a constraint the provider cannot enforce would turn a content problem
(three options instead of four) into an unparsable answer that costs a whole retry. Content rules are
checked afterwards by the course validator, whose coded issues drive a targeted repair of just the
failing items. Every field is required and nullable instead of optional, as strict mode demands.

Field names are the course format's camelCase names, so the model maps them one to one.

``to_course_item`` maps one answer onto its skeleton item (structure and arithmetic enforced); fill and
repair share it so both enforce the same rules.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ignite_dagster.course.skeleton import SkeletonItem
from ignite_dagster.course.validation import FILL_TOKEN, numbers_equal, parse_number


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FilledItem(_Strict):
    """One item's content; structure (groupId, clusterId, variant, mode) comes from the skeleton."""

    id: int
    text: str
    options: list[str] | None
    correctIndex: int | None  # noqa: N815 - the course format's name
    answer: float | None
    hint: str | None
    explain: str | None
    wrongExplanations: list[str] | None  # noqa: N815
    relatedStudyTextIds: list[str] | None  # noqa: N815


class ItemBatch(_Strict):
    """The answer to one fill call: the items of (part of) one group."""

    items: list[FilledItem]


class RepairedItems(_Strict):
    """The answer to one repair call: replacements for the failing items sent."""

    items: list[FilledItem]


class CourseOverview(_Strict):
    """Course-level text the skeleton cannot provide."""

    title: str
    description: str


class StudyTextOut(_Strict):
    """One study text; ``content`` carries ``[SECTION:…]`` and ``[IMAGE:…]`` markers."""

    title: str
    content: str
    learningObjectives: list[str]  # noqa: N815
    keywords: list[str]
    estimatedReadingTime: int  # noqa: N815 - minutes
    difficulty: str


# --- mapping answers onto the skeleton ---------------------------------------------------------------

UNFILLED = FILL_TOKEN


def expected_index(options: list[str], expected: float) -> int | None:
    """Index of the option that states ``expected`` as a plain number, if exactly one does.

    Uses the validator's number parsing so enforcement and validation agree on what "states" means.
    """
    hits = [
        i for i, o in enumerate(options) if (n := parse_number(o)) is not None and numbers_equal(n, float(expected))
    ]
    return hits[0] if len(hits) == 1 else None


def _clean_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def to_course_item(sk: SkeletonItem, filled: FilledItem | None, slot_ids: set[str]) -> dict[str, Any]:
    """The course item for ``sk`` built from the model's answer, with the skeleton enforced.

    Structure (id, groupId, clusterId, variant, mode) always comes from the skeleton. Arithmetic is
    exact: a numeric item's answer is ``meta.expected``; an options item's correctIndex is set to the
    option stating ``meta.expected`` — and when no option states it, the model's index is kept so the
    validator reports ``math_incorrect`` and the item goes to repair (nothing is made up here). An item
    the model left out keeps the ``__FILL__`` placeholder, which the validator reports as
    ``unfilled_text``.
    """
    item: dict[str, Any] = {
        "id": sk.id,
        "groupId": sk.group_id,
        "clusterId": sk.cluster_id,
        "variant": sk.variant,
        "mode": sk.mode,
    }
    if filled is None:
        item["text"] = UNFILLED
        return item
    item["text"] = filled.text
    if sk.mode == "options":
        options = [str(o) for o in (filled.options or [])]
        item["options"] = options
        correct = filled.correctIndex
        if sk.meta is not None:
            idx = expected_index(options, sk.meta.expected)
            if idx is not None:
                correct = idx
        if correct is not None:
            item["correctIndex"] = correct
        if filled.wrongExplanations:
            item["wrongExplanations"] = list(filled.wrongExplanations)
    else:
        answer = sk.meta.expected if sk.meta is not None else filled.answer
        if answer is not None:
            item["answer"] = _clean_number(answer)
    if filled.hint:
        item["hint"] = filled.hint
    if filled.explain:
        item["explain"] = filled.explain
    related = [s for s in (filled.relatedStudyTextIds or []) if s in slot_ids]
    if related:
        item["relatedStudyTextIds"] = list(dict.fromkeys(related))
    return item
