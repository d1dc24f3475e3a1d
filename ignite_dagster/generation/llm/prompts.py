"""Prompts for skeleton fill and repair; ``PROMPT_VERSION`` names this exact wording.

Why versioned: the version goes into every generated course (``generation.promptVersion``) and into
the LLM cache key, so a wording change never serves answers written for the old wording and a course
can be traced to the prompt that wrote it. Bump it whenever a message below changes.

Messages are built deterministically (sorted JSON, no timestamps or ids), so the same request yields
byte-identical messages and therefore cache hits.

Budget: the request's source material (``study_text``, up to 50 000 characters) goes in full into the
study-text calls, which are written from it; item and overview calls get its first
``SOURCE_EXCERPT_CHARS`` characters, enough to keep items on the same material without paying for the
whole text in every batch.
"""

from __future__ import annotations

import json
from typing import Any

from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton, SkeletonItem, StudyTextSlot

PROMPT_VERSION = "fill-v1"
SOURCE_EXCERPT_CHARS = 8000

_OPS = {"add": "+", "sub": "-", "mul": "×", "div": "÷"}

SYSTEM = """You write content for short practice courses used by school students.
Write for the stated grade band and in the stated language. Be accurate, concrete and kind.
Follow the teacher's special requests unless they conflict with these rules.
Answer only with JSON that matches the response schema."""

ITEM_RULES = """Rules for every item:
- Keep each item's "id" exactly as given. Write one item for every id listed, and no others.
- "text" (1-2000 characters) contains exactly one "[blank]" placeholder, where the answer goes. No other blanks or underscores.
- Items with the same clusterId practise the same skill; variants "1", "2", "3" are different wordings or contexts of it.
- mode "options": "options" holds exactly 4 distinct short choices (each 1-200 characters), "correctIndex" is the 0-based index of the correct one, "answer" is null. "wrongExplanations" has one entry per option explaining why that option is wrong ("" for the correct option).
- mode "numeric": "options", "correctIndex" and "wrongExplanations" are null, "answer" is the number that fills the blank.
- When an item has "arithmetic", its answer is exactly the given value: for mode "options" include that value written as a plain number among the options and point "correctIndex" at it.
- "hint" (at most 200 characters) nudges without giving the answer away; "explain" (at most 1000 characters) shows why the answer is right.
- "relatedStudyTextIds": ids from the study texts listed that the item practises, or null."""


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1)


def _context(skeleton: Skeleton, request: CourseRequest, *, full_source: bool = False) -> str:
    lines = [
        f"Subject: {skeleton.subject}",
        f"Topic: {skeleton.topic}" if skeleton.topic else "",
        f"Grade band: {skeleton.grade_band}" + (f" (grade {request.grade})" if request.grade else ""),
        f"Language (locale): {skeleton.locale}",
        f"Answer mode of the course: {skeleton.mode}",
    ]
    if request.notes:
        lines.append(f"Special requests from the teacher:\n<<<\n{request.notes}\n>>>")
    if request.study_text:
        source = request.study_text if full_source else request.study_text[:SOURCE_EXCERPT_CHARS]
        cut = "" if len(source) == len(request.study_text) else "\n[... source continues ...]"
        lines.append(f"Source material to base the course on:\n<<<\n{source}{cut}\n>>>")
    return "\n".join(line for line in lines if line)


def _slots_listing(skeleton: Skeleton) -> list[dict[str, Any]]:
    return [{"id": s.id, "title": s.title_hint} for s in sorted(skeleton.study_text_slots, key=lambda s: s.order)]


def item_spec(item: SkeletonItem) -> dict[str, Any]:
    """What the model is told about one skeleton item (structure and exact arithmetic)."""
    spec: dict[str, Any] = {"id": item.id, "clusterId": item.cluster_id, "variant": item.variant, "mode": item.mode}
    if item.meta is not None:
        m = item.meta
        spec["arithmetic"] = {"expression": f"{m.a} {_OPS[m.op]} {m.b}", "answer": m.expected}
    return spec


def overview_messages(skeleton: Skeleton, request: CourseRequest) -> list[dict[str, Any]]:
    groups = [g.name for g in skeleton.groups]
    user = (
        f"{_context(skeleton, request)}\n\nThe course has these groups of practice items: {_dump(groups)}.\n"
        "Write the course title (at most 80 characters) and a description for students and teachers "
        "(at most 400 characters)."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def study_text_messages(skeleton: Skeleton, request: CourseRequest, slot: StudyTextSlot) -> list[dict[str, Any]]:
    others = [s for s in _slots_listing(skeleton) if s["id"] != slot.id]
    image_rule = (
        "- Include exactly one [IMAGE:description] marker on its own line where a picture helps; the description "
        "(at most 200 characters) says what an illustrator should draw. No URLs.\n"
        if slot.wants_image
        else "- Do not include [IMAGE:...] markers.\n"
    )
    user = (
        f"{_context(skeleton, request, full_source=True)}\n\n"
        f"Write study text number {slot.order + 1} of the course"
        + (f', about "{slot.title_hint}"' if slot.title_hint else "")
        + ".\n"
        + (f"The other study texts cover: {_dump([o['title'] for o in others])}; do not repeat them.\n" if others else "")
        + "Rules:\n"
        "- 250 to 600 words, at the reading level of the grade band.\n"
        "- Divide the content into 2 to 5 sections; start each with a [SECTION:Section title] marker on its own line.\n"
        + image_rule
        + "- \"title\" at most 120 characters; 2 to 4 learningObjectives; 3 to 8 keywords; "
        "estimatedReadingTime in whole minutes; difficulty one of easy, medium, hard."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def item_batch_messages(
    skeleton: Skeleton, request: CourseRequest, group_name: str, items: list[SkeletonItem]
) -> list[dict[str, Any]]:
    slots = _slots_listing(skeleton)
    user = (
        f"{_context(skeleton, request)}\n\n"
        + (f"Study texts of the course: {_dump(slots)}\n\n" if slots else "")
        + f'Write these practice items of the group "{group_name}":\n{_dump([item_spec(i) for i in items])}\n\n'
        + ITEM_RULES
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def repair_messages(
    skeleton: Skeleton, request: CourseRequest, entries: list[tuple[SkeletonItem, dict[str, Any], list[str]]]
) -> list[dict[str, Any]]:
    """``entries``: (skeleton item, the item as it stands, its validation messages)."""
    blocks = []
    for sk, current, problems in entries:
        blocks.append({"spec": item_spec(sk), "current": current, "problems": problems})
    slots = _slots_listing(skeleton)
    user = (
        f"{_context(skeleton, request)}\n\n"
        + (f"Study texts of the course: {_dump(slots)}\n\n" if slots else "")
        + "These practice items failed validation. Rewrite each one so that every listed problem is fixed, "
        "keeping its id, clusterId, variant, mode and topic. Return every item listed, complete.\n"
        f"{_dump(blocks)}\n\n"
        + ITEM_RULES
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
