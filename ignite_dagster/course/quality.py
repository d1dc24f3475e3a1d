"""Quality gates: what a teacher could not use, found before a course ships, and the figures behind them.

Why a module of its own: the structural rules (``validation``) say whether a course *is* a Course v2;
these say whether it is worth shipping. A small model writes courses that are structurally perfect and
useless — four identical options, three groups called "The Solar System", a photosynthesis course about
"Paleo-Fuel & Nutrition", numeric items whose text does not ask for the answer they carry. Each gate is a
validation code with severity ``error`` (course-format codes, ``issues.QUALITY_GATE_CODES``): an item that
fails one goes to the bounded repair like any other item error; a course that still fails after repair
ends ``quality_failed`` and is never written.

The gates (thresholds are settings, ``QualityThresholds.from_settings``):

* ``duplicate_options`` (validation's base check, an error): an item repeats an option.
* ``duplicate_group_names`` / ``empty_group_name``: groups must be told apart by name (course-level).
* ``duplicate_item_texts``: two items of one group with the same text (case, spacing and punctuation
  ignored); reported on the later item, so repair rewrites one of them.
* ``off_subject``: the course must name its subject. An element *names the subject* when it contains a
  word of it (prefix-matched, so "volcanic" names "volcanoes"), or, for an arithmetic subject (addition,
  subtraction, multiplication, division), a word of the operation or an expression with its sign. Study
  texts and the title must name it (course-level: not repairable item by item); an item must name it or
  share ``min_shared_words`` content words with the study texts that do (item-level: repairable).
* ``numeric_answer_mismatch``: where the text states a computable expression (``12 × 3``, ``25% of 80``)
  the answer (numeric) or the correct option (when it is a number) must be its value; with a skeleton, an
  arithmetic item's text must state both of its operands (otherwise the answer cannot follow from it).
* ``answer_length_giveaway``: the correct option is ``option_length_ratio`` times longer than the
  longest distractor (or shorter than the shortest by that ratio) and differs by at least
  ``option_length_min_chars`` characters: a student can pick it without reading.

Plus one warning, ``reading_level_off_band``: a study text whose Flesch–Kincaid grade is more than
``reading_grade_tolerance`` above the top of the course's grade band.

``quality_figures`` gives the numbers the ``course_quality`` asset check shows, and ``course_preview``
a short Markdown rendering for the materialization (so a reviewer sees the course in the UI).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.numbers import parse_number
from ignite_dagster.course.readability import flesch_kincaid_grade, strip_markers, text_stats

if TYPE_CHECKING:
    from ignite_dagster.config import Settings
    from ignite_dagster.course.model import Course, Item
    from ignite_dagster.course.skeleton import Skeleton


@dataclass(frozen=True)
class QualityThresholds:
    """The gates' knobs (defaults equal the settings' defaults, see ``config.py``)."""

    min_shared_words: int = 2
    option_length_ratio: float = 2.5
    option_length_min_chars: int = 12
    reading_grade_tolerance: float = 3.0

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityThresholds:
        return cls(
            min_shared_words=settings.quality_min_shared_words,
            option_length_ratio=settings.quality_option_length_ratio,
            option_length_min_chars=settings.quality_option_length_min_chars,
            reading_grade_tolerance=settings.quality_reading_grade_tolerance,
        )


# --------------------------------------------------------------------------------------------------
# words

_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_STOPWORDS = frozenset(
    """a about above after again all also an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or
    other our out over own same she should so some such than that the their them then there these they this
    those through to too under until up very was we were what when where which while who whom why will with
    would you your yours one two three four five many much every item items word words answer blank text
    which what choose correct option options true false""".split()  # noqa: SIM905 - a word list reads as words
)
# arithmetic subjects are named by their operation's words and sign, not only by the subject's own word
_OPERATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "add": (("addition", "add", "adding", "adds", "added", "sum", "sums", "plus", "total"), "+"),
    "sub": (("subtraction", "subtract", "subtracting", "minus", "difference"), "-−"),
    "mul": (("multiplication", "multiply", "multiplying", "times", "product"), "×x*"),
    "div": (("division", "divide", "dividing", "quotient"), "÷/"),
}
_OP = r"(?:\s*([+×*÷])\s*|\s([\-−x/])\s)"  # "-", "x" and "/" only between spaces: "3-4", "1/2" are no sums
_N = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"  # 79,490 and 3.5
_EXPR_RE = re.compile(rf"(?<![\d.,])(-?{_N}){_OP}(-?{_N})")
_OPERATOR_COUNT_RE = re.compile(rf"(?<![\d.,])(?={_N}{_OP}-?\d)")
_PERCENT_RE = re.compile(rf"({_N})\s*%\s+of\s+({_N})", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_PUNCT_RE = re.compile(r"[^\w\s\[\]]+")


def words(text: str | None) -> list[str]:
    return [w.casefold() for w in _WORD_RE.findall(text or "")]


def content_words(text: str | None) -> list[str]:
    """Words that carry meaning: four letters or more, not a stop word."""
    return meaningful(words(text))


def meaningful(text_words: list[str]) -> list[str]:
    """``content_words`` of a text already split into ``words``."""
    return [w for w in text_words if len(w) >= 4 and w not in _STOPWORDS]


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("es"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s"):
        return word[:-1]
    return word


def same_word(a: str, b: str) -> bool:
    """Two words of one family: equal, or sharing a prefix of three quarters of the shorter (at least
    four letters, or all of a shorter word): "volcanoes" ~ "volcanic", "egypt" ~ "egyptian"."""
    if a == b:
        return True
    shorter = min(len(a), len(b))
    if shorter < 3:
        return False
    need = max(min(4, shorter), math.ceil(0.75 * shorter))
    return a[:need] == b[:need]


@functools.lru_cache(maxsize=1 << 16)
def _names_word(word: str, subject_words: tuple[str, ...]) -> bool:
    """Whether ``word`` is of the family of one of ``subject_words`` (memoized: a course repeats its words,
    and the subject scan asks about every word of every text)."""
    return any(same_word(word, s) for s in subject_words)


def subject_words(subject: str) -> list[str]:
    return [w for w in words(subject) if len(w) >= 3 and w not in _STOPWORDS]


@dataclass(frozen=True)
class SubjectMatcher:
    """Whether a text names a subject (see the module docstring)."""

    words: tuple[str, ...]
    signs: str = ""

    @classmethod
    def of(cls, subject: str, terms: tuple[str, ...] = ()) -> SubjectMatcher:
        """``terms``: more words that name the subject (a pack's aliases and vocabulary)."""
        own = subject_words(subject) + [w for t in terms for w in subject_words(t)]
        extra: list[str] = []
        signs = ""
        for family, sign in _OPERATIONS.values():
            if any(same_word(w, f) for w in own for f in family[:2]):
                extra += family
                signs += sign
        return cls(tuple(dict.fromkeys(own + extra)), signs)

    def names(self, text: str | None) -> bool:
        return self.names_words(text, words(text)) if text else False

    def names_words(self, text: str, text_words: list[str]) -> bool:
        """``names`` for a text already split into ``words``."""
        if not text:
            return False
        if any(_names_word(w, self.words) for w in text_words):
            return True
        if self.signs:
            for m in _EXPR_RE.finditer(text):
                if (m.group(2) or m.group(3)) in self.signs:
                    return True
        return False


def _item_texts(item: Item) -> list[str]:
    return [t for t in [item.text, item.hint, item.explain, *(item.options or [])] if t]


def normalized(text: str) -> str:
    """Text as the duplicate gates compare it: case, spacing and punctuation ignored."""
    return " ".join(_PUNCT_RE.sub(" ", text.casefold()).split())


# --------------------------------------------------------------------------------------------------
# numbers


def _num(text: str) -> float:
    return float(text.replace("−", "-").replace(",", ""))


def computed_value(text: str) -> float | None:
    """The value of the one computable expression a text states (``a op b`` or ``p% of n``), else None."""
    percents = _PERCENT_RE.findall(text)
    exprs = list(_EXPR_RE.finditer(text))
    if len(percents) + len(_OPERATOR_COUNT_RE.findall(text)) != 1:
        return None
    if percents:
        p, n = percents[0]
        return _num(p) * _num(n) / 100.0
    m = exprs[0]
    a, op, b = _num(m.group(1)), m.group(2) or m.group(3), _num(m.group(4))
    if op == "+":
        return a + b
    if op in "-−":
        return a - b
    if op in "×x*":
        return a * b
    if b == 0:
        return None
    return a / b


def _numbers_in(text: str) -> set[float]:
    out = set()
    for token in _NUMBER_RE.findall(text):
        try:
            out.add(float(token.replace(",", "")))
        except ValueError:
            continue
    return out


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def _stated_answer(item: Item) -> float | None:
    if item.mode == "numeric":
        return float(item.answer) if item.answer is not None else None
    if item.options and item.correct_index is not None and 0 <= item.correct_index < len(item.options):
        return parse_number(item.options[item.correct_index])
    return None


# --------------------------------------------------------------------------------------------------
# the gates


def _err(code: str, message: str, item_id: int | None = None, field: str | None = None) -> Issue:
    return Issue(code=code, severity="error", message=message, item_id=item_id, field=field)  # type: ignore[arg-type]


@dataclass
class _Subject:
    """What the off-subject gate found, shared by the gate and the figures."""

    texts_on: list[bool]
    title_on: bool
    items_on: dict[int, bool]
    anywhere: bool


def subject_scan(course: Course, thresholds: QualityThresholds, terms: tuple[str, ...] = ()) -> _Subject:
    """Which parts of ``course`` are on its subject: the gate and the check's figures read one scan (it is
    the costliest part of a course's quality, a few ms of text matching).

    A course is scanned by the worker's gates and again, as stored, by its ``course_quality`` check in
    the run's reporting step: the scan is a function of the texts it reads, the subject and the shared-words
    threshold, and the last scans are kept by those (``_scan``), so the second scan is the first's.
    The result is shared: callers only read it."""
    return _scan(course.subject, terms, thresholds.min_shared_words, course.title, course.description,
                 tuple((st.title, st.content) for st in course.study_texts or []),
                 tuple((item.id, tuple(_item_texts(item))) for item in course.items))


@functools.lru_cache(maxsize=64)
def _scan(subject: str, terms: tuple[str, ...], min_shared_words: int, title: str, description: str | None,
          study_texts: tuple[tuple[str, str], ...], items: tuple[tuple[int, tuple[str, ...]], ...]) -> _Subject:
    matcher = SubjectMatcher.of(subject, terms)
    # a course repeats its texts (options, hints) and words: each text is split, matched and stemmed once
    seen: dict[str, tuple[bool, set[str]]] = {}

    def read(text: str | None) -> tuple[bool, set[str]]:
        key = text or ""
        found = seen.get(key)
        if found is None:
            ws = words(key)
            found = seen[key] = (matcher.names_words(key, ws), {_stem(w) for w in meaningful(ws)})
        return found

    def names(text: str | None) -> bool:
        return read(text)[0]

    def stemmed(text: str | None) -> set[str]:
        return read(text)[1]

    texts_on = [names(st_title) or names(strip_markers(content)) for st_title, content in study_texts]
    vocabulary: set[str] = set()
    for (st_title, content), on in zip(study_texts, texts_on, strict=True):
        if on:
            vocabulary |= stemmed(strip_markers(content)) | stemmed(st_title)
    title_on = names(title) or bool(stemmed(title) & vocabulary)
    items_on: dict[int, bool] = {}
    for item_id, parts in items:
        shared = set().union(*(stemmed(t) for t in parts)) & vocabulary
        items_on[item_id] = any(names(t) for t in parts) or len(shared) >= min_shared_words
    anywhere = (names(title) or names(description) or any(texts_on)
                or any(names(t) for _, parts in items for t in parts))
    return _Subject(texts_on, title_on, items_on, anywhere)


def quality_issues(course: Course, skeleton: Skeleton | None, thresholds: QualityThresholds,
                   subject_terms: tuple[str, ...] = (), *, scan: _Subject | None = None) -> list[Issue]:
    """Every quality gate's issues (errors) plus the reading-level warning; see the module docstring.
    ``subject_terms``: words that name the subject besides its own (a pack's aliases and vocabulary:
    "nouns" names "parts of speech")."""
    issues: list[Issue] = []
    _group_gates(course, issues)
    _item_text_gate(course, skeleton, issues)
    _subject_gate(course, thresholds, scan if scan is not None else subject_scan(course, thresholds, subject_terms), issues)
    for item in course.items:
        _numeric_gate(item, skeleton, issues)
        _length_gate(item, thresholds, issues)
    _reading_level(course, thresholds, issues)
    return issues


def _group_gates(course: Course, issues: list[Issue]) -> None:
    seen: dict[str, int] = {}
    for i, group in enumerate(course.groups):
        key = normalized(group.name)
        if not key:
            issues.append(_err("empty_group_name", f"group {group.id} has no name", field=f"groups[{i}].name"))
            continue
        if key in seen:
            issues.append(_err("duplicate_group_names", f"groups {seen[key]} and {group.id} are both named "
                                                        f"{group.name.strip()!r}", field=f"groups[{i}].name"))
        else:
            seen[key] = group.id


def _item_text_gate(course: Course, skeleton: Skeleton | None, issues: list[Issue]) -> None:
    """Two items of a group worded alike, unless both restate one arithmetic problem: the skeleton repeats
    a problem on purpose when a group's number range is small (``draw_problem``), the pack's wording of
    it is then the same, and repair could not change its numbers. Without a skeleton, a repeated
    problem is a text with numbers whose stated answers agree."""
    seen: dict[tuple[int, str], Item] = {}
    for item in course.items:
        key = (item.group_id, normalized(item.text))
        first = seen.get(key)
        if first is None:
            seen[key] = item
        elif not _same_problem(first, item, skeleton):
            issues.append(_err("duplicate_item_texts", f"item {item.id}: same text as item {first.id} of its group",
                               item.id, "text"))


def _same_problem(a: Item, b: Item, skeleton: Skeleton | None) -> bool:
    if skeleton is not None:
        ma, mb = (skeleton.item(a.id), skeleton.item(b.id))
        return ma is not None and mb is not None and ma.meta is not None and ma.meta == mb.meta
    va, vb = _stated_answer(a), _stated_answer(b)
    return bool(_numbers_in(a.text)) and va is not None and vb is not None and _close(va, vb)


def _subject_gate(course: Course, thresholds: QualityThresholds, scan: _Subject, issues: list[Issue]) -> None:
    subject = course.subject
    if not scan.anywhere:
        issues.append(_err("off_subject", f"the course never names its subject {subject!r} (title, description, "
                                          "study texts and items)", field="subject"))
        return
    for i, (st, on) in enumerate(zip(course.study_texts or [], scan.texts_on, strict=True)):
        if not on:
            issues.append(_err("off_subject", f"study text {st.id} ({st.title!r}) never names {subject!r}",
                               field=f"studyTexts[{i}]"))
    if not scan.title_on:
        issues.append(_err("off_subject", f"the title {course.title!r} neither names {subject!r} nor shares a word "
                                          "with the study texts", field="title"))
    for item in course.items:
        if not scan.items_on[item.id]:
            issues.append(_err("off_subject", f"item {item.id}: names neither {subject!r} nor "
                                              f"{thresholds.min_shared_words} words of the study texts about it",
                               item.id, "text"))


def _numeric_gate(item: Item, skeleton: Skeleton | None, issues: list[Issue]) -> None:
    stated = _stated_answer(item)
    if stated is None:
        return
    question = item.text.split("[blank]")[0] if item.text.count("[blank]") == 1 else item.text
    value = computed_value(question)
    if value is not None and not _close(value, stated):
        shown = int(value) if float(value).is_integer() else round(value, 6)
        issues.append(_err("numeric_answer_mismatch", f"item {item.id}: the text computes to {shown} but the answer "
                                                      f"is {stated:g}", item.id, "text"))
        return
    sk = skeleton.item(item.id) if skeleton is not None else None
    if sk is not None and sk.meta is not None:
        numbers = _numbers_in(item.text)
        missing = [n for n in (sk.meta.a, sk.meta.b) if not any(_close(float(n), x) for x in numbers)]
        if missing:
            issues.append(_err("numeric_answer_mismatch", f"item {item.id}: the text does not state "
                                                          f"{sk.meta.a} and {sk.meta.b}, so its answer "
                                                          f"{sk.meta.expected} cannot follow from it", item.id, "text"))


def _length_gate(item: Item, thresholds: QualityThresholds, issues: list[Issue]) -> None:
    options = [o.strip() for o in item.options or []]
    ci = item.correct_index
    if item.mode != "options" or len(options) < 3 or ci is None or not 0 <= ci < len(options):
        return
    correct = len(options[ci])
    others = [len(o) for k, o in enumerate(options) if k != ci]
    longest, shortest = max(others), min(others)
    ratio, gap = thresholds.option_length_ratio, thresholds.option_length_min_chars
    if (correct >= ratio * longest and correct - longest >= gap) or (correct * ratio <= shortest and shortest - correct >= gap):
        issues.append(_err("answer_length_giveaway", f"item {item.id}: the correct option has {correct} characters, "
                                                     f"the others {shortest}–{longest}: its length gives it away",
                           item.id, "options"))


_BAND_RE = re.compile(r"^(K|\d+)(?:-(K|\d+))?$", re.IGNORECASE)


def band_top(grade_band: str) -> int | None:
    """The highest grade of a band ("3-5" → 5, "K-2" → 2, "7" → 7); None when it is not a band."""
    m = _BAND_RE.match(grade_band.strip())
    if not m:
        return None
    top = m.group(2) or m.group(1)
    return 0 if top.upper() == "K" else int(top)


_MIN_WORDS = 20


def reading_levels(course: Course) -> list[tuple[str, float]]:
    """(study text id, Flesch–Kincaid grade) of every study text long enough to measure."""
    out = []
    for st in course.study_texts or []:
        if text_stats(st.content)[0] >= _MIN_WORDS:
            out.append((st.id, flesch_kincaid_grade(st.content)))
    return out


def _reading_level(course: Course, thresholds: QualityThresholds, issues: list[Issue]) -> None:
    top = band_top(course.grade_band)
    if top is None:
        return
    index = {st.id: i for i, st in enumerate(course.study_texts or [])}
    for sid, grade in reading_levels(course):
        i = index[sid]
        if grade > top + thresholds.reading_grade_tolerance:
            issues.append(Issue(code="reading_level_off_band", severity="warning",
                                message=f"study text {sid}: Flesch–Kincaid grade {grade} is above grade band "
                                        f"{course.grade_band} (+{thresholds.reading_grade_tolerance:g})",
                                field=f"studyTexts[{i}].content"))


# --------------------------------------------------------------------------------------------------
# figures and preview


def quality_figures(course: Course, thresholds: QualityThresholds, subject_terms: tuple[str, ...] = (), *,
                    scan: _Subject | None = None) -> dict[str, Any]:
    """The numbers behind the gates, for the ``course_quality`` check's metadata."""
    option_items = [it for it in course.items if it.mode == "options" and it.options]
    distinct = [it for it in option_items if len({o.strip().casefold() for o in it.options or []}) == len(it.options or [])]
    names = [normalized(g.name) for g in course.groups]
    scan = scan if scan is not None else subject_scan(course, thresholds, subject_terms)
    levels = reading_levels(course)
    top = band_top(course.grade_band)
    return {
        "distinct_options_share": round(len(distinct) / len(option_items), 3) if option_items else 1.0,
        "distinct_group_names": f"{len({n for n in names if n})}/{len(names)}",
        "on_subject_share": round(sum(scan.items_on.values()) / len(scan.items_on), 3) if scan.items_on else 1.0,
        "study_texts_on_subject": f"{sum(scan.texts_on)}/{len(scan.texts_on)}",
        "title_on_subject": scan.title_on,
        "reading_level_max": max((g for _, g in levels), default=0.0),
        "grade_band": course.grade_band,
        "grade_band_top": top if top is not None else "unknown",
        "reading_level_ok": top is None or all(g <= top + thresholds.reading_grade_tolerance for _, g in levels),
    }


def _opening(text: str, limit: int = 280) -> str:
    prose = " ".join(strip_markers(text).split())
    if len(prose) <= limit:
        return prose
    cut = prose[:limit]
    return cut[: cut.rfind(" ")] + " …" if " " in cut else cut + "…"


def course_preview(course: Course, n_items: int = 3) -> str:
    """A short Markdown view: title, groups, the first study text's opening, a few items (correct marked)."""
    lines = [f"### {course.title}", f"*{course.subject}, grade band {course.grade_band}*", "", "**Groups:** "
             + "; ".join(g.name for g in course.groups)]
    texts = sorted(course.study_texts or [], key=lambda s: s.order)
    if texts:
        lines += ["", f"**{texts[0].title}**", "", "> " + _opening(texts[0].content)]
    lines += ["", "**Items:**"]
    for item in course.items[:n_items]:
        lines.append(f"1. {item.text}")
        if item.mode == "options":
            for k, option in enumerate(item.options or []):
                mark = " ✅" if k == item.correct_index else ""
                lines.append(f"    - {option}{mark}")
        else:
            lines.append(f"    - answer: {item.answer} ✅")
    return "\n".join(lines)
