"""Response schemas built per call from the skeleton, so constrained decoding does the validating.

Why per call: the course rules a provider can enforce while it decodes are specific to the call — the
number of items in this batch, the number of groups and clusters in this course, the answer mode.
Structured outputs (OpenAI strict mode; llama.cpp, vLLM and others compile the schema into a grammar)
then make a whole class of validation errors impossible instead of repairing them afterwards:

============================  ===============================================================
rule (course-format.md)       how the schema encodes it
============================  ===============================================================
one answer per skeleton item  ``items``: ``minItems`` = ``maxItems`` = the batch size
exactly one ``[blank]``       ``text``: ``pattern`` with one literal ``\\[blank\\]`` and no other
                              brackets or underscores (underscore runs also count as blanks)
3–4 options                   ``options``: ``minItems`` = ``maxItems`` = 4
correctIndex in range         ``correctIndex``: integer, ``minimum`` 0, ``maximum`` 3
length limits                 ``pattern`` quantifiers (``[^\\n]{1,150}``): OpenAI strict mode does
                              not accept ``minLength``/``maxLength``; ``pattern`` it does
known values                  ``enum`` (difficulty) and integer ranges (study text numbers)
============================  ===============================================================

Every object is closed (``additionalProperties: false``) and lists every property as required, as strict
mode demands. ``SchemaPolicy.drop`` removes keywords a given server rejects
(``IGNITE_LLM_SCHEMA_DROP=pattern`` for one that cannot compile patterns); the validator still checks
every rule afterwards, so dropping a keyword costs repair rounds, never correctness.

Item identity comes from position: the n-th answer of a batch belongs to the n-th skeleton item sent.
The model never writes ids, so it cannot write the wrong ones.

Answers are parsed into the loose pydantic models below (the schema, not the parser, does the
constraining; a server that ignored a keyword still yields a draft the validator can judge).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from ignite_dagster.course.skeleton import Skeleton, SkeletonItem
from ignite_dagster.course.validation import FILL_TOKEN, numbers_equal, parse_number

OPTIONS_PER_ITEM = 4
# Pattern bodies. Character classes exclude '"' and '\\': servers that compile the schema into a grammar
# (llama.cpp) apply a pattern to the raw JSON text, where an unescaped quote ends the string and breaks
# the JSON; excluding both keeps the pattern's meaning the same on the raw text and on the decoded value.
# Control characters are excluded for the same reason: a raw newline is not valid inside a JSON string, and
# the escaped form needs the backslash, so model-written strings are single lines (sections are separate).
# No "[" "]" or "_" around the blank: both would count as extra blanks.
_C = r'[^"\\\[\]_\x00-\x1f]'  # text characters: no quote, backslash, bracket, underscore, control character
_L = r'[^"\\\[\]\x00-\x1f]'  # line characters: no quote, backslash, bracket, control character
# the first character of a name or title: a line character but no space, so a name is never blank (a
# small model fills a "3 to 80 characters" title with spaces, and the course then has no title at all)
_F = r'[^ "\\\[\]\x00-\x1f]'
TEXT_PATTERN = rf"^{_C}{{2,120}}\[blank\]{_C}{{0,80}}$"
OPTION_PATTERN = rf"^{_F}{_L}{{0,39}}$"
HINT_PATTERN = rf"^{_L}{{3,100}}$"
EXPLAIN_PATTERN = rf"^{_L}{{3,160}}$"
TITLE_PATTERN = rf"^{_F}{_L}{{2,79}}$"
DESCRIPTION_PATTERN = rf"^{_L}{{10,240}}$"
NAME_PATTERN = rf"^{_F}{_L}{{2,59}}$"
OBJECTIVE_PATTERN = rf"^{_F}{_L}{{4,99}}$"
SECTION_TITLE_PATTERN = rf"^{_F}{_L}{{2,59}}$"
SECTION_BODY_PATTERN = rf"^{_L}{{60,600}}$"  # one paragraph per section
IMAGE_PATTERN = rf"^{_L}{{5,120}}$"
KEYWORD_PATTERN = rf"^{_F}{_L}{{1,29}}$"
DIFFICULTIES = ["easy", "medium", "hard"]
CONSTRAINT_KEYWORDS = frozenset({"pattern", "minItems", "maxItems", "minimum", "maximum", "enum"})


@dataclass(frozen=True)
class SchemaPolicy:
    """Which constraint keywords to leave out for a server that rejects them (default: none)."""

    drop: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> SchemaPolicy:
        names = frozenset(n.strip() for n in (text or "").split(",") if n.strip())
        unknown = names - CONSTRAINT_KEYWORDS
        if unknown:
            raise ValueError(f"unknown schema keyword(s) {sorted(unknown)}; known: {sorted(CONSTRAINT_KEYWORDS)}")
        return cls(names)

    def apply(self, schema: dict[str, Any]) -> dict[str, Any]:
        if not self.drop:
            return schema

        def strip(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: strip(v) for k, v in node.items() if not (k in self.drop and not isinstance(v, dict))}
            if isinstance(node, list):
                return [strip(v) for v in node]
            return node

        return strip(schema)


# --- output size ---------------------------------------------------------------------------------------

_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")
# The budget is a true ceiling, one token per character: English averages about four characters a token,
# but a small model writing odd fragments does not (measured on SmolLM2-135M: a 4-item batch, sized at three
# characters a token, was cut off twice, at 985 and 1,968 tokens). A call the schema bounds this way can
# never be truncated; the server's slot (see ``provider.output_budget``) is what lowers big budgets.
OUTPUT_CHARS_PER_TOKEN = 1
# whitespace a grammar-constrained server may put around each JSON separator (llama.cpp's schema grammar:
# a newline and up to 20 spaces or tabs)
_SEPARATOR_CHARS = 22
_NUMBER_CHARS = 12


def _pattern_chars(pattern: str) -> int | None:
    """The longest string an anchored pattern of bounded quantifiers admits (None: unbounded)."""
    if re.search(r"(?<!\\)[*+]", pattern):
        return None
    total = 0
    for m in _QUANTIFIER.finditer(pattern):
        upper = m.group(2) if m.group(2) is not None else m.group(1)
        if upper == "":
            return None
        total += int(upper)
    literal = _QUANTIFIER.sub("", pattern)
    literal = re.sub(r"\[(?:\\.|[^\]])*\]", "", literal)  # character classes were counted by their quantifier
    return total + len(re.sub(r"\\(.)", r"\1", literal.strip("^$")))


def schema_max_chars(node: Any) -> int | None:
    """The longest JSON a wire schema admits, in characters (None when some part is unbounded)."""
    if not isinstance(node, dict):
        return None
    if "enum" in node:
        return max(len(json.dumps(v)) for v in node["enum"]) if node["enum"] else None
    kind = node.get("type")
    if kind == "string":
        if "pattern" in node:  # our patterns admit no quote, backslash or control character: nothing to escape
            chars = _pattern_chars(node["pattern"])
            return None if chars is None else chars + 2
        chars = node.get("maxLength")
        return None if chars is None else chars * 2 + 2  # every character might need an escape
    if kind in ("integer", "number"):
        return _NUMBER_CHARS
    if kind == "boolean":
        return 5
    if kind == "array":
        n = node.get("maxItems")
        one = schema_max_chars(node.get("items"))
        return None if n is None or one is None else n * (one + 1 + _SEPARATOR_CHARS) + 2 + _SEPARATOR_CHARS
    if kind == "object":
        total = 2
        for key, child in (node.get("properties") or {}).items():
            one = schema_max_chars(child)
            if one is None:
                return None
            total += len(key) + 4 + one + 2 * _SEPARATOR_CHARS
        return total + _SEPARATOR_CHARS
    return None


def schema_max_tokens(schema: dict[str, Any]) -> int | None:
    """An output budget that holds the longest answer ``schema`` admits (None: unbounded)."""
    chars = schema_max_chars(schema)
    return None if chars is None else chars // OUTPUT_CHARS_PER_TOKEN + 32


# --- schema builders ---------------------------------------------------------------------------------


def _obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": list(properties), "properties": properties}


def _str(pattern: str) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern}


def _array(items: dict[str, Any], n_min: int, n_max: int | None = None) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": n_min, "maxItems": n_max if n_max is not None else n_min}


def item_schema(mode: str) -> dict[str, Any]:
    """One item's content; structure (id, groupId, clusterId, variant, mode) comes from the skeleton."""
    if mode == "options":
        return _obj(
            text=_str(TEXT_PATTERN),
            options=_array(_str(OPTION_PATTERN), OPTIONS_PER_ITEM),
            correctIndex={"type": "integer", "minimum": 0, "maximum": OPTIONS_PER_ITEM - 1},
            hint=_str(HINT_PATTERN),
            explain=_str(EXPLAIN_PATTERN),
        )
    return _obj(text=_str(TEXT_PATTERN), answer={"type": "number"}, hint=_str(HINT_PATTERN), explain=_str(EXPLAIN_PATTERN))


def item_batch_schema(mode: str, n_items: int) -> dict[str, Any]:
    """Exactly ``n_items`` answers, in the order the items were sent."""
    return _obj(items=_array(item_schema(mode), n_items))


def clusters_of(skeleton: Skeleton, group_id: int) -> list[str]:
    """The group's cluster ids in skeleton order."""
    return list(dict.fromkeys(it.cluster_id for it in skeleton.items if it.group_id == group_id))


def plan_schema(skeleton: Skeleton) -> dict[str, Any]:
    """The plan of a course without a pack: skill-named groups, cluster objectives, level and study text
    titles, and which study text each group practises (by its number, 1-based)."""
    n_texts = len(skeleton.study_text_slots)
    groups = []
    for g in skeleton.groups:
        props: dict[str, Any] = {
            "name": _str(NAME_PATTERN),
            "objectives": _array(_str(OBJECTIVE_PATTERN), len(clusters_of(skeleton, g.id))),
        }
        if n_texts:
            props["studyText"] = {"type": "integer", "minimum": 1, "maximum": n_texts}
        groups.append(_obj(**props))
    group_shape = groups[0] if groups else _obj(name=_str(NAME_PATTERN))
    # every group has the same shape unless cluster counts differ; then the largest bound is used and
    # the plan is read positionally (extra objectives are ignored, missing ones leave a cluster plain)
    counts = {len(clusters_of(skeleton, g.id)) for g in skeleton.groups}
    if len(counts) > 1:
        group_shape["properties"]["objectives"] = _array(_str(OBJECTIVE_PATTERN), min(counts), max(counts))
    props = {
        "title": _str(TITLE_PATTERN),
        "description": _str(DESCRIPTION_PATTERN),
        "groups": _array(group_shape, len(skeleton.groups)),
        "levels": _array(_str(NAME_PATTERN), len(skeleton.levels)),
    }
    if n_texts:
        props["studyTexts"] = _array(_str(TITLE_PATTERN), n_texts)
    return _obj(**props)


def overview_schema() -> dict[str, Any]:
    """Title and description for a course whose structure a pack already named."""
    return _obj(title=_str(TITLE_PATTERN), description=_str(DESCRIPTION_PATTERN))


def study_text_schema(wants_image: bool) -> dict[str, Any]:
    """A study text as sections (assembled into ``[SECTION:…]`` markup here, so markers are always right)."""
    props: dict[str, Any] = {
        "title": _str(TITLE_PATTERN),
        "sections": _array(_obj(title=_str(SECTION_TITLE_PATTERN), body=_str(SECTION_BODY_PATTERN)), 2, 4),
        "learningObjectives": _array(_str(OBJECTIVE_PATTERN), 2, 4),
        "keywords": _array(_str(KEYWORD_PATTERN), 3, 6),
        "estimatedReadingTime": {"type": "integer", "minimum": 1, "maximum": 30},
        "difficulty": {"type": "string", "enum": DIFFICULTIES},
    }
    if wants_image:
        props["imageDescription"] = _str(IMAGE_PATTERN)
    return _obj(**props)


# --- answer models (parsing only; the schema does the constraining) -----------------------------------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FilledItem(_Loose):
    text: str = ""
    options: list[str] | None = None
    correctIndex: int | None = None  # noqa: N815 - the course format's name
    answer: float | None = None
    hint: str | None = None
    explain: str | None = None


class ItemBatch(_Loose):
    items: list[FilledItem]


class PlanGroup(_Loose):
    name: str | None = None
    objectives: list[str] = []
    studyText: int | None = None  # noqa: N815


class CoursePlan(_Loose):
    title: str
    description: str
    groups: list[PlanGroup] = []
    levels: list[str] = []
    studyTexts: list[str] = []  # noqa: N815


class CourseOverview(_Loose):
    title: str
    description: str


class Section(_Loose):
    title: str
    body: str


class StudyTextOut(_Loose):
    title: str
    sections: list[Section]
    learningObjectives: list[str] = []  # noqa: N815
    keywords: list[str] = []
    estimatedReadingTime: int = 1  # noqa: N815 - minutes
    difficulty: str = "medium"
    imageDescription: str | None = None  # noqa: N815


# --- mapping answers onto the skeleton ---------------------------------------------------------------

UNFILLED = FILL_TOKEN


def expected_index(options: list[str], expected: float) -> int | None:
    """Index of the option that states ``expected`` as a plain number, if exactly one does."""
    hits = [
        i for i, o in enumerate(options) if (n := parse_number(o)) is not None and numbers_equal(n, float(expected))
    ]
    return hits[0] if len(hits) == 1 else None


def _clean_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _fmt(value: float) -> str:
    return str(_clean_number(value))


def to_course_item(sk: SkeletonItem, filled: FilledItem | None, related: Iterable[str] = ()) -> dict[str, Any]:
    """The course item for ``sk`` built from the model's answer, with the skeleton enforced.

    Structure (id, groupId, clusterId, variant, mode) always comes from the skeleton. Arithmetic is
    exact: a numeric item's answer is ``meta.expected``; an options item's correctIndex points at the
    option stating ``meta.expected``, and when no option states it, the model's choice of correct option
    is rewritten to state the skeleton's answer (the exact value is known, so writing it is not making
    anything up). ``related`` are the study texts the item practises (from the plan). An item the model
    left out keeps the ``__FILL__`` placeholder, which the validator reports as ``unfilled_text``.
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
        correct = filled.correctIndex
        if sk.meta is not None and options:
            idx = expected_index(options, sk.meta.expected)
            if idx is not None:
                correct = idx
            else:  # no option states the answer: the one marked correct is made to state it
                correct = correct if correct is not None and 0 <= correct < len(options) else 0
                options[correct] = _fmt(sk.meta.expected)
        item["options"] = options
        if correct is not None:
            item["correctIndex"] = correct
    else:
        answer = sk.meta.expected if sk.meta is not None else filled.answer
        if answer is not None:
            item["answer"] = _clean_number(answer)
    if filled.hint:
        item["hint"] = filled.hint
    if filled.explain:
        item["explain"] = filled.explain
    related = list(dict.fromkeys(related))
    if related:
        item["relatedStudyTextIds"] = related
    return item


def study_text_content(out: StudyTextOut, wants_image: bool) -> str:
    """``[SECTION:title]`` blocks, with one ``[IMAGE:…]`` marker after the first section when asked for."""
    blocks = []
    for n, section in enumerate(out.sections):
        blocks.append(f"[SECTION:{section.title.strip()}]\n{section.body.strip()}")
        if n == 0 and wants_image and out.imageDescription:
            blocks.append(f"[IMAGE:{out.imageDescription.strip()}]")
    return "\n\n".join(blocks)
