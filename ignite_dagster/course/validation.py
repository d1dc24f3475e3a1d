"""Coded validation of a Course v2 draft.

The codes are a contract: they appear in job errors, in ``validation_issues.json`` and drive the repair
loop (only item-level errors that name an item are sent back to the model).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ignite_dagster.course.issues import QUALITY_GATE_CODES, Issue
from ignite_dagster.course.model import Course, Item, parse_course
from ignite_dagster.course.numbers import numbers_equal, parse_number
from ignite_dagster.course.quality import QualityThresholds, quality_issues
from ignite_dagster.course.readability import flesch_kincaid_grade, text_stats

__all__ = ["ContentGates", "count_blanks", "errors_of", "is_quality_failure", "numbers_equal", "parse_number",
           "schema_issues", "validate_course", "warnings_of"]

if TYPE_CHECKING:
    from ignite_dagster.course.skeleton import Skeleton, SkeletonItem

class ContentGates(BaseModel):
    """A pack's content gates, applied to both deterministic and model-written courses."""

    banned_terms: list[str] = Field(default_factory=list)
    reading_level_max: float | None = None
    # words that name the pack's subject besides its topic (aliases, vocabulary), for the off_subject gate
    subject_terms: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Checks. The model and the skeleton are imported for type checking only: ``model`` imports ``Issue``.

FILL_TOKEN = "__FILL__"
_BLANK_RE = re.compile(r"\[blank\]", re.IGNORECASE)
_LONE_UNDERSCORES_RE = re.compile(r"(?<![A-Za-z0-9_])_+(?![A-Za-z0-9_])")
_SECTION_RE = re.compile(r"\[SECTION:[^\]]+\]")
_ID_RE = re.compile(r"^[a-z0-9-]{1,64}$")
_MIN_WORDS_FOR_READABILITY = 20


def count_blanks(text: str) -> int:
    """``[blank]`` placeholders plus standalone underscore runs (``__FILL__`` is not a blank)."""
    return len(_BLANK_RE.findall(text)) + len(_LONE_UNDERSCORES_RE.findall(text))


def _err(code: str, message: str, item_id: int | None = None, field: str | None = None) -> Issue:
    return Issue(code=code, severity="error", message=message, item_id=item_id, field=field)  # type: ignore[arg-type]


def _warn(code: str, message: str, item_id: int | None = None, field: str | None = None) -> Issue:
    return Issue(code=code, severity="warning", message=message, item_id=item_id, field=field)  # type: ignore[arg-type]


def _length(issues: list[Issue], value: str | None, lo: int, hi: int, field: str, item_id: int | None = None) -> None:
    if value is None:
        return
    if not lo <= len(value) <= hi:
        issues.append(_err("schema_error", f"{field} must be {lo}–{hi} characters, has {len(value)}", item_id, field))


def _banned_regex(terms: list[str]) -> re.Pattern[str] | None:
    cleaned = [t.strip() for t in terms if t and t.strip()]
    if not cleaned:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(cleaned, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


def _course_level_checks(course: Course, skeleton: Skeleton | None, issues: list[Issue]) -> None:
    if not _ID_RE.match(course.id):
        issues.append(_err("schema_error", f"course id {course.id!r} must match ^[a-z0-9-]{{1,64}}$", field="id"))
    _length(issues, course.title, 1, 120, "title")
    if course.description is not None and len(course.description) > 500:
        issues.append(_err("schema_error", "description must be at most 500 characters", field="description"))
    if not course.groups:
        issues.append(_err("schema_error", "a course needs at least one group", field="groups"))
    if not course.levels:
        issues.append(_err("schema_error", "a course needs at least one level", field="levels"))
    if not course.items:
        issues.append(_err("schema_error", "a course needs at least one item", field="items"))
    for i, group in enumerate(course.groups):
        if group.id < 0:
            issues.append(_err("schema_error", f"group id {group.id} must be >= 0", field=f"groups[{i}].id"))
        _length(issues, group.name, 1, 120, f"groups[{i}].name")
    # Against the skeleton's item count when there is one: a missing item is reported (repairably) on
    # the item, not again as an unrepairable level range.
    n_items = len(skeleton.items) if skeleton is not None else len(course.items)
    for i, level in enumerate(course.levels):
        if level.end < level.start:
            issues.append(_err("schema_error", f"level {level.id}: end {level.end} < start {level.start}", field=f"levels[{i}]"))
        if level.start < 0 or (n_items and level.end >= n_items):
            issues.append(
                _err("schema_error", f"level {level.id}: range {level.start}..{level.end} outside items 0..{n_items - 1}", field=f"levels[{i}]")
            )
    for text_field, value in (("title", course.title), ("description", course.description)):
        if value and FILL_TOKEN in value:
            issues.append(_err("unfilled_text", f"{text_field} still holds {FILL_TOKEN}", field=text_field))


def _item_checks(course: Course, skeleton: Skeleton | None, issues: list[Issue]) -> None:
    group_ids = {g.id for g in course.groups}
    seen: set[int] = set()
    for item in course.items:
        iid = item.id
        if iid < 0:
            issues.append(_err("schema_error", f"item id {iid} must be >= 0", iid, "id"))
        if iid in seen:
            issues.append(_err("schema_error", f"item id {iid} appears more than once", iid, "id"))
        seen.add(iid)
        if group_ids and item.group_id not in group_ids:
            issues.append(_err("schema_error", f"item {iid}: groupId {item.group_id} is not a course group", iid, "groupId"))
        _length(issues, item.cluster_id, 1, 64, "clusterId", iid)
        if item.variant not in ("1", "2", "3"):
            issues.append(_err("schema_error", f"item {iid}: variant must be '1', '2' or '3', got {item.variant!r}", iid, "variant"))
        if item.mode not in ("options", "numeric"):
            issues.append(_err("schema_error", f"item {iid}: mode must be 'options' or 'numeric', got {item.mode!r}", iid, "mode"))
        _length(issues, item.text, 1, 2000, "text", iid)
        if item.hint is not None and len(item.hint) > 200:
            issues.append(_err("schema_error", f"item {iid}: hint must be at most 200 characters", iid, "hint"))
        if item.explain is not None and len(item.explain) > 1000:
            issues.append(_err("schema_error", f"item {iid}: explain must be at most 1000 characters", iid, "explain"))

        texts = {"text": item.text, "hint": item.hint, "explain": item.explain}
        texts.update({f"options[{k}]": o for k, o in enumerate(item.options or [])})
        unfilled = [name for name, value in texts.items() if value and FILL_TOKEN in value]
        if unfilled:
            issues.append(_err("unfilled_text", f"item {iid}: {FILL_TOKEN} left in {', '.join(unfilled)}", iid, unfilled[0]))

        blanks = count_blanks(item.text)
        if blanks != 1:
            issues.append(_err("invalid_blank_count", f"item {iid}: text must hold exactly one [blank], has {blanks}", iid, "text"))

        if item.mode == "options":
            _options_checks(item, issues)
        elif item.mode == "numeric":
            if item.answer is None:
                issues.append(_err("missing_answer", f"item {iid}: numeric item has no answer", iid, "answer"))
            if item.options:
                issues.append(_err("unexpected_options", f"item {iid}: numeric item must not have options", iid, "options"))

        if skeleton is not None:
            _math_check(item, skeleton, issues)

    if skeleton is not None:
        for sk in skeleton.items:
            if sk.id not in seen:
                issues.append(_err("schema_error", f"item {sk.id} of the skeleton is missing", sk.id, "items"))


def _options_checks(item: Item, issues: list[Issue]) -> None:
    iid = item.id
    options = item.options or []
    if not 3 <= len(options) <= 4:
        issues.append(_err("invalid_options_count", f"item {iid}: options mode needs 3–4 options, has {len(options)}", iid, "options"))
    for k, option in enumerate(options):
        if not 1 <= len(option.strip()) <= 200:
            issues.append(_err("schema_error", f"item {iid}: option {k} must be 1–200 characters", iid, f"options[{k}]"))
    ci = item.correct_index
    if ci is None or not 0 <= ci < len(options):
        issues.append(
            _err("invalid_correct_index", f"item {iid}: correctIndex {ci} is not an index of its {len(options)} options", iid, "correctIndex")
        )
    folded = [o.strip().casefold() for o in options]
    if len(set(folded)) != len(folded):
        issues.append(_err("duplicate_options", f"item {iid}: options repeat", iid, "options"))  # a quality gate


def _math_check(item: Item, skeleton: Skeleton, issues: list[Issue]) -> None:
    sk = skeleton.item(item.id)
    if sk is None or sk.meta is None:
        return
    expected = sk.meta.expected
    if item.mode == "numeric" and item.answer is not None and not numbers_equal(float(item.answer), float(expected)):
        issues.append(_err("math_incorrect", f"item {item.id}: answer {item.answer} but {_expr(sk)} = {expected}", item.id, "answer"))
    if item.mode == "options" and item.options and item.correct_index is not None and 0 <= item.correct_index < len(item.options):
        chosen = item.options[item.correct_index]
        value = parse_number(chosen)
        if value is None or not numbers_equal(value, float(expected)):
            issues.append(
                _err("math_incorrect", f"item {item.id}: correct option {chosen!r} but {_expr(sk)} = {expected}", item.id, "correctIndex")
            )


def _expr(sk: SkeletonItem) -> str:
    assert sk.meta is not None
    symbol = {"add": "+", "sub": "-", "mul": "×", "div": "÷"}[sk.meta.op]
    return f"{sk.meta.a} {symbol} {sk.meta.b}"


def _study_text_checks(course: Course, skeleton: Skeleton | None, gates: ContentGates | None, issues: list[Issue]) -> None:
    texts = course.study_texts or []
    present = {st.id for st in texts}
    if skeleton is not None:
        for slot in skeleton.study_text_slots:
            if slot.id not in present:
                issues.append(_err("unfilled_content", f"study text {slot.id} is missing", field=f"studyTexts[{slot.id}]"))
    for i, st in enumerate(texts):
        field = f"studyTexts[{i}]"
        _length(issues, st.id, 1, 64, f"{field}.id")
        _length(issues, st.title, 1, 200, f"{field}.title")
        if not st.content.strip():
            issues.append(_err("unfilled_content", f"study text {st.id} has no content", field=f"{field}.content"))
            continue
        if FILL_TOKEN in st.content or FILL_TOKEN in st.title:
            issues.append(_err("unfilled_text", f"study text {st.id} still holds {FILL_TOKEN}", field=f"{field}.content"))
        if not _SECTION_RE.search(st.content):
            issues.append(_warn("missing_section_markers", f"study text {st.id} has no [SECTION:…] markers", field=f"{field}.content"))
        if gates is not None and gates.reading_level_max is not None:
            words, _, _ = text_stats(st.content)
            if words >= _MIN_WORDS_FOR_READABILITY:
                grade = flesch_kincaid_grade(st.content)
                if grade > gates.reading_level_max:
                    issues.append(
                        _err(
                            "readability",
                            f"study text {st.id}: Flesch–Kincaid grade {grade} above the maximum {gates.reading_level_max}",
                            field=f"{field}.content",
                        )
                    )


def _banned_checks(course: Course, gates: ContentGates | None, issues: list[Issue]) -> None:
    if gates is None:
        return
    pattern = _banned_regex(gates.banned_terms)
    if pattern is None:
        return

    def scan(value: str | None, field: str, item_id: int | None = None) -> None:
        if not value:
            return
        match = pattern.search(value)
        if match:
            where = f"item {item_id}" if item_id is not None else field
            issues.append(_err("banned_term", f"{where}: banned term {match.group(0)!r}", item_id, field))

    scan(course.title, "title")
    scan(course.description, "description")
    for item in course.items:
        for name, value in (("text", item.text), ("hint", item.hint), ("explain", item.explain)):
            scan(value, name, item.id)
        for k, option in enumerate(item.options or []):
            scan(option, f"options[{k}]", item.id)
        for k, wrong in enumerate(item.wrong_explanations or []):
            scan(wrong, f"wrongExplanations[{k}]", item.id)
    for i, st in enumerate(course.study_texts or []):
        scan(st.title, f"studyTexts[{i}].title")
        scan(st.content, f"studyTexts[{i}].content")


def validate_course(
    course: Course,
    skeleton: Skeleton | None = None,
    gates: ContentGates | None = None,
    quality: QualityThresholds | None = None,
) -> list[Issue]:
    """Every coded issue of ``course``: structure, items, arithmetic (with a skeleton), study texts, a pack's
    gates, and with ``quality`` the quality gates (``course/quality.py``; the generation path always
    passes them, a structural check such as ``course_schema_valid`` does not)."""
    issues: list[Issue] = []
    _course_level_checks(course, skeleton, issues)
    _item_checks(course, skeleton, issues)
    _study_text_checks(course, skeleton, gates, issues)
    _banned_checks(course, gates, issues)
    if quality is not None:
        issues += quality_issues(course, skeleton, quality, tuple(gates.subject_terms) if gates else ())
    return issues


def schema_issues(doc: Any, parsed: tuple[Course | None, list[Issue]] | None = None) -> list[Issue]:
    """The course schema check of a stored course.json (``course_schema_valid``, and ``ignite demo``'s
    verdict on each course it made): the issues of parsing ``doc`` as Course v2, or when it parses, of
    its structural validation (no skeleton, pack gates or quality thresholds: a file read back from
    storage is judged as a Course v2, not as the draft of one generation path)."""
    course, issues = parsed if parsed is not None else parse_course(doc)
    return validate_course(course) if course is not None else issues


def is_quality_failure(errors: list[Issue]) -> bool:
    """Every error is a quality gate: the course is a valid Course v2 a teacher could not use."""
    return bool(errors) and all(i.code in QUALITY_GATE_CODES for i in errors)


def errors_of(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


def warnings_of(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "warning"]
