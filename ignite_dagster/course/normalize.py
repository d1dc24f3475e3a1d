"""Deterministic clean-up of a draft before validation and repair.

Each rule fixes a mechanical slip a model (or a hand edit) makes often and whose fix has exactly one
right answer. Anything ambiguous is left alone for validation to report and for repair to fix: guessing
here would silently change what the learner sees.
"""

from __future__ import annotations

import re

from ignite_dagster.course.model import Course, Group, Item, Level
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton
from ignite_dagster.course.validation import count_blanks, parse_number

BLANK = "[blank]"
_BLANK_VARIANTS_RE = re.compile(r"\[\s*blank\s*\]", re.IGNORECASE)
_UNDERSCORE_RUN_RE = re.compile(r"(?<![A-Za-z0-9_])_+(?![A-Za-z0-9_])")
# Blanks separated only by whitespace or dashes ("___ ___", "[blank] [blank]") are one blank written twice.
_ADJACENT_BLANKS_RE = re.compile(r"\[blank\](?:[\s\-–]*\[blank\])+")
_EQUALS_QUESTION_RE = re.compile(r"=\s*\?")
_OP_SYMBOLS = {
    "add": ("+",),
    "sub": ("-", "−", "–"),
    "mul": ("×", "x", "*", "·"),
    "div": ("÷", "/"),
}


def normalize_blanks(text: str) -> str:
    """Underscore runs and ``[ Blank ]`` spellings → ``[blank]``; adjacent repeats → one."""
    text = _BLANK_VARIANTS_RE.sub(BLANK, text)
    text = _UNDERSCORE_RUN_RE.sub(BLANK, text)
    return _ADJACENT_BLANKS_RE.sub(BLANK, text)


def _expression_re(meta: ArithmeticMeta) -> re.Pattern[str]:
    symbols = "|".join(re.escape(s) for s in _OP_SYMBOLS[meta.op])
    return re.compile(rf"(?<![\d.]){re.escape(str(meta.a))}\s*(?:{symbols})\s*{re.escape(str(meta.b))}(?!\d|[.,]\d)")


def insert_missing_blank(text: str, meta: ArithmeticMeta | None) -> str:
    """Add the one blank a text lacks, only where its place is unambiguous.

    In order: a single ``= ?`` becomes ``= [blank]``; a text ending in ``=`` gets ``[blank]``; a text whose
    only arithmetic is the skeleton's expression (with nothing after it but ``.``) gets
    ``= [blank]`` after it; a text ending with a question mark gets the answer blank after the question.
    """
    if count_blanks(text) != 0:
        return text
    if len(_EQUALS_QUESTION_RE.findall(text)) == 1:
        return _EQUALS_QUESTION_RE.sub(f"= {BLANK}", text)
    stripped = text.rstrip()
    if stripped.endswith("="):
        return f"{stripped} {BLANK}"
    if meta is not None:
        matches = list(_expression_re(meta).finditer(text))
        if len(matches) == 1 and "=" not in text:
            end = matches[0].end()
            tail = text[end:].strip()
            if tail in ("", "."):
                return f"{text[:end]} = {BLANK}"
    if stripped.endswith("?"):
        return f"{stripped} {BLANK}"
    return text


def dedupe_options(item: Item) -> Item:
    """Drop repeated options when the correct answer survives and at least three options remain."""
    options = item.options or []
    ci = item.correct_index
    if item.mode != "options" or ci is None or not 0 <= ci < len(options):
        return item
    folded = [o.casefold() for o in options]
    if len(set(folded)) == len(folded):
        return item
    kept: list[str] = []
    kept_folded: list[str] = []
    for option, key in zip(options, folded, strict=True):
        if key not in kept_folded:
            kept.append(option)
            kept_folded.append(key)
    if len(kept) < 3:
        return item
    new_ci = kept_folded.index(folded[ci])
    return item.model_copy(update={"options": kept, "correct_index": new_ci})


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def normalize_item(item: Item, meta: ArithmeticMeta | None = None) -> Item:
    """Apply the item rules: trim, blanks, numeric items lose options, de-duplicate options."""
    update: dict[str, object] = {
        "text": insert_missing_blank(normalize_blanks(item.text.strip()), meta),
        "hint": _strip(item.hint),
        "explain": _strip(item.explain),
    }
    if item.options is not None:
        update["options"] = [o.strip() for o in item.options]
    item = item.model_copy(update=update)
    if item.mode == "numeric":
        answer = item.answer
        if answer is None and item.options and item.correct_index is not None and 0 <= item.correct_index < len(item.options):
            # The model gave the answer as a chosen option; it is the same number, only in the wrong field.
            value = parse_number(item.options[item.correct_index])
            if value is not None:
                answer = int(value) if value.is_integer() else value
        item = item.model_copy(update={"options": None, "correct_index": None, "option_media": None, "answer": answer})
    else:
        item = dedupe_options(item)
    if item.model_extra and "_meta" in item.model_extra:
        # The skeleton is the source of truth for arithmetic; a copy in the course would only go stale.
        data = item.model_dump(by_alias=True, exclude_none=True)
        data.pop("_meta", None)
        item = Item.model_validate(data)
    return item


def _enforce_skeleton(course: Course, skeleton: Skeleton) -> Course:
    """Structure comes from the skeleton: ids, groups, clusters, variants, modes and levels."""
    by_id = {it.id: it for it in course.items}
    items: list[Item] = []
    for sk in skeleton.items:
        item = by_id.get(sk.id)
        if item is None:
            continue  # reported as a missing item by validation
        items.append(
            item.model_copy(update={"group_id": sk.group_id, "cluster_id": sk.cluster_id, "variant": sk.variant, "mode": sk.mode})
        )
    draft_names = {g.id: g.name.strip() for g in course.groups if g.name and g.name.strip()}
    groups = [Group(id=g.id, name=draft_names.get(g.id, g.name), color=g.color) for g in skeleton.groups]
    levels = [Level.model_validate(lv.model_dump()) for lv in skeleton.levels]
    return course.model_copy(
        update={
            "id": skeleton.course_id,
            "subject": skeleton.subject,
            "grade_band": skeleton.grade_band,
            "locale": skeleton.locale,
            "groups": groups,
            "levels": levels,
            "items": items,
        }
    )


def normalize_course(course: Course, skeleton: Skeleton | None = None) -> Course:
    """The deterministic normalisation of the spec; same input → same output."""
    if skeleton is not None:
        course = _enforce_skeleton(course, skeleton)
    metas = {it.id: it.meta for it in skeleton.items} if skeleton is not None else {}
    items = [normalize_item(item, metas.get(item.id)) for item in course.items]
    study_texts = None
    if course.study_texts is not None:
        study_texts = [
            st.model_copy(update={"title": st.title.strip(), "content": st.content.strip()}) for st in course.study_texts
        ]
    return course.model_copy(
        update={
            "title": course.title.strip(),
            "description": _strip(course.description),
            "items": items,
            "study_texts": study_texts,
        }
    )
