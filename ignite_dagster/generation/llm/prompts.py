"""Prompts for skeleton fill and repair; ``PROMPT_VERSION`` names this exact wording.

Why versioned: the version goes into every generated course (``generation.promptVersion``) and into
the LLM cache key, so a wording change never serves answers written for the old wording and a course
can be traced to the prompt that wrote it. Bump it whenever a message below changes.

Messages are built deterministically (sorted JSON, no timestamps or ids), so the same request yields
byte-identical messages and therefore cache hits.

Item identity is positional: the prompt lists the items to write in order and the schema asks for exactly
that many answers in that order; no prompt asks the model to copy ids.

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

PROMPT_VERSION = "fill-v3"
SOURCE_EXCERPT_CHARS = 8000

_OPS = {"add": "+", "sub": "-", "mul": "×", "div": "÷"}

SYSTEM = """You write content for short practice courses used by school students.
Write for the stated grade band and in the language of the stated locale. Be accurate, concrete and kind.
Follow the teacher's special requests unless they conflict with these rules.
Answer only with JSON that matches the response schema."""

ITEM_RULES = """Rules for every item:
- "text" is one sentence or question with exactly one "[blank]" where the answer goes. No other brackets or underscores.
- Items of the same skill practise it in different wordings or contexts.
- mode "options": "options" holds 4 distinct short choices, "correctIndex" is the 0-based index of the correct one.
- mode "numeric": "answer" is the number that fills the blank.
- When an item has "arithmetic", its answer is exactly the given value: for mode "options" write that value as a plain number in one option and point "correctIndex" at it.
- "hint" nudges without giving the answer away; "explain" says in one sentence why the answer is right.
- Answer with one entry per item listed, in the same order."""


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1)


def _context(skeleton: Skeleton, request: CourseRequest, *, full_source: bool = False) -> str:
    lines = [
        f"Subject: {skeleton.subject}",
        f"Topic: {skeleton.topic}" if skeleton.topic else "",
        f"Grade band: {skeleton.grade_band}" + (f" (grade {request.grade})" if request.grade else ""),
        f"Language (locale): {skeleton.locale} — write every text in this language",
        f"Answer mode of the course: {skeleton.mode}",
    ]
    if request.notes:
        lines.append(f"Special requests from the teacher:\n<<<\n{request.notes}\n>>>")
    if request.study_text:
        source = request.study_text if full_source else request.study_text[:SOURCE_EXCERPT_CHARS]
        cut = "" if len(source) == len(request.study_text) else "\n[... source continues ...]"
        lines.append(f"Source material to base the course on:\n<<<\n{source}{cut}\n>>>")
    return "\n".join(line for line in lines if line)


def _messages(user: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def item_spec(item: SkeletonItem, objective: str | None = None) -> dict[str, Any]:
    """What the model is told about one skeleton item: its mode, its skill and its exact arithmetic."""
    spec: dict[str, Any] = {"item": item.id + 1, "mode": item.mode, "variant": item.variant}
    if objective:
        spec["skill"] = objective
    if item.meta is not None:
        m = item.meta
        spec["arithmetic"] = {"expression": f"{m.a} {_OPS[m.op]} {m.b}", "answer": m.expected}
    return spec


def plan_messages(skeleton: Skeleton, request: CourseRequest) -> list[dict[str, Any]]:
    """The plan of a course without a pack: groups named by skill, objectives, titles."""
    shape = [
        {"group": n + 1, "skills": len({it.cluster_id for it in skeleton.items if it.group_id == g.id}),
         "items": sum(1 for it in skeleton.items if it.group_id == g.id)}
        for n, g in enumerate(skeleton.groups)
    ]
    texts = len(skeleton.study_text_slots)
    user = (
        f"{_context(skeleton, request)}\n\n"
        f"Plan a practice course in {len(skeleton.groups)} groups of items: {_dump(shape)}.\n"
        "- \"title\": the course title; \"description\": one or two sentences for students and teachers.\n"
        "- \"groups\": for each group, a short \"name\" (two to five words) naming the skill it practises, and one "
        "learning objective per skill in \"objectives\" (what the student can do afterwards).\n"
        f"- \"levels\": {len(skeleton.levels)} short level titles, from easiest to hardest.\n"
        + (
            f"- \"studyTexts\": {texts} study text titles, each covering different material the items practise; "
            f"each group's \"studyText\" is the number (1 to {texts}) of the study text it practises.\n"
            if texts else ""
        )
    )
    return _messages(user)


def overview_messages(skeleton: Skeleton, request: CourseRequest) -> list[dict[str, Any]]:
    groups = [g.name for g in skeleton.groups]
    user = (
        f"{_context(skeleton, request)}\n\nThe course has these groups of practice items: {_dump(groups)}.\n"
        "Write the course title and a description for students and teachers (one or two sentences)."
    )
    return _messages(user)


def study_text_messages(
    skeleton: Skeleton, request: CourseRequest, slot: StudyTextSlot, *, title: str | None = None,
    skills: list[str] | None = None, other_titles: list[str] | None = None,
) -> list[dict[str, Any]]:
    title = title or slot.title_hint
    image_rule = (
        '- "imageDescription": what an illustrator should draw for this text (no URLs).\n' if slot.wants_image else ""
    )
    user = (
        f"{_context(skeleton, request, full_source=True)}\n\n"
        f"Write study text number {slot.order + 1} of the course" + (f', titled "{title}"' if title else "") + ".\n"
        + (f"Students practise these skills with it: {_dump(skills)}\n" if skills else "")
        + (f"The other study texts cover: {_dump(other_titles)}; do not repeat them.\n" if other_titles else "")
        + "Rules:\n"
        "- 2 to 4 sections, each with a short title and a body of a few sentences at the reading level of the grade band.\n"
        + image_rule
        + "- 2 to 4 learningObjectives; 3 to 6 keywords; estimatedReadingTime in whole minutes; difficulty easy, medium or hard."
    )
    return _messages(user)


def item_batch_messages(
    skeleton: Skeleton, request: CourseRequest, group_name: str, items: list[SkeletonItem],
    objectives: dict[str, str] | None = None, study_text_title: str | None = None,
) -> list[dict[str, Any]]:
    objectives = objectives or {}
    specs = [item_spec(i, objectives.get(i.cluster_id)) for i in items]
    user = (
        f"{_context(skeleton, request)}\n\n"
        + (f'These items practise the study text "{study_text_title}".\n' if study_text_title else "")
        + f'Write {len(items)} practice items of the group "{group_name}", in this order:\n{_dump(specs)}\n\n'
        + ITEM_RULES
    )
    return _messages(user)


def repair_messages(
    skeleton: Skeleton, request: CourseRequest, entries: list[tuple[SkeletonItem, dict[str, Any], list[str]]]
) -> list[dict[str, Any]]:
    """``entries``: (skeleton item, the item as it stands, its validation messages), in answer order."""
    blocks = []
    for sk, current, problems in entries:
        shown = {k: v for k, v in current.items() if k in ("text", "options", "correctIndex", "answer", "hint", "explain")}
        blocks.append({"spec": item_spec(sk), "current": shown, "problems": problems})
    user = (
        f"{_context(skeleton, request)}\n\n"
        f"These {len(entries)} practice items failed validation. Rewrite each one so that every listed problem is "
        "fixed, keeping its topic and mode. Answer with one entry per item, in the same order.\n"
        f"{_dump(blocks)}\n\n"
        + ITEM_RULES
    )
    return _messages(user)
