"""Stage 3 (deterministic): compile a curated pack into the skeleton — no model call.

Arithmetic items take their numbers from the skeleton's ``meta`` and their distractors from the errors
learners really make (off by one, forgetting to carry, subtracting the smaller digit from the larger,
misaligned place value, the wrong operation, stopping a division one group early …). Knowledge items are
the pack's hand-written facts. A PRNG seeded from ``pack_id|version|subject|grade|mode`` picks phrasings
and shuffles options, so the same request always compiles to the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton, SkeletonItem
from ignite_dagster.generation.packs import ArithmeticPack, ArithmeticTemplate, KnowledgePack, Section
from ignite_dagster.generation.stages.build_skeleton import compute, seed_string, seeded_rng

SYMBOLS = {"add": "+", "sub": "-", "mul": "×", "div": "÷"}
_IMAGE_MARKER_RE = re.compile(r"[ \t]*\[IMAGE:[^\]]*\][ \t]*\n?")


def fmt(n: int) -> str:
    """Thousands separators ("4,567"): every number of an option set is written the same way, so the
    format never gives the answer away."""
    return f"{n:,}"


def fmt_operand(n: int) -> str:
    """Negative operands in parentheses so "5 − (−3)" reads unambiguously."""
    return f"({fmt(n)})" if n < 0 else fmt(n)


def expression(meta: ArithmeticMeta) -> str:
    first = fmt(meta.a)
    return f"{first} {SYMBOLS[meta.op]} {fmt_operand(meta.b)}"


# ------------------------------------------------------------------------------------------------
# Distractors: each function models one real error and returns candidate wrong answers.


def _digits(n: int) -> list[int]:
    return [int(d) for d in reversed(str(abs(n)))]


def _from_digits(digits: list[int]) -> int:
    return int("".join(str(d) for d in reversed(digits)) or "0")


def _carry_slip(m: ArithmeticMeta) -> list[int]:
    """Addition without carrying: each column keeps only its ones digit (47 + 38 → 75)."""
    if m.op != "add" or m.a < 0 or m.b < 0:
        return []
    da, db = _digits(m.a), _digits(m.b)
    width = max(len(da), len(db))
    da += [0] * (width - len(da))
    db += [0] * (width - len(db))
    return [_from_digits([(x + y) % 10 for x, y in zip(da, db, strict=True)])]


def _column_subtract(m: ArithmeticMeta, borrow_wrong: bool) -> list[int]:
    if m.op != "sub" or m.a < 0 or m.b < 0 or m.a < m.b:
        return []
    da, db = _digits(m.a), _digits(m.b)
    db += [0] * (len(da) - len(db))
    out = []
    for x, y in zip(da, db, strict=True):
        if x >= y:
            out.append(x - y)
        elif borrow_wrong:
            out.append(x + 10 - y)  # borrowed, but forgot to take one from the next column
        else:
            out.append(y - x)  # "smaller from larger" in every column
    return [_from_digits(out)]


def _reversed_digits(m: ArithmeticMeta) -> list[int]:
    return _column_subtract(m, borrow_wrong=False)


def _borrow_slip(m: ArithmeticMeta) -> list[int]:
    return _column_subtract(m, borrow_wrong=True)


def _place_value_slip(m: ArithmeticMeta) -> list[int]:
    """Numbers lined up on the left instead of by place value (345 + 27 → 345 + 270)."""
    e = int(m.expected)
    if m.op == "div":
        return [e * 10]
    if m.op == "mul":
        return [e * 10] if m.a >= 0 and m.b >= 0 else [e + 10]
    la, lb = len(str(abs(m.a))), len(str(abs(m.b)))
    if m.a >= 0 and m.b >= 0 and la != lb:
        shift = 10 ** abs(la - lb)
        if la > lb:
            return [compute(m.op, m.a, m.b * shift)]
        return [compute(m.op, m.a * shift, m.b)]
    return [e + 10, e - 10]


def _off_by_one(m: ArithmeticMeta) -> list[int]:
    e = int(m.expected)
    return [e + 1, e - 1]


def _wrong_operation(m: ArithmeticMeta) -> list[int]:
    if m.op == "add":
        return [m.a - m.b if m.a >= m.b else m.b - m.a]
    if m.op in ("sub", "mul"):
        return [m.a + m.b]
    return [m.a - m.b]


def _reversed_operands(m: ArithmeticMeta) -> list[int]:
    if m.op == "sub":
        return [m.b - m.a]
    if m.op == "div" and m.a != 0 and m.b % m.a == 0:
        return [m.b // m.a]
    return []


def _one_group_off(m: ArithmeticMeta) -> list[int]:
    """Counted one group too many or too few (6 × 7 → 48 or 36)."""
    if m.op != "mul":
        return []
    e = int(m.expected)
    return [e + m.a, e - m.a, e + m.b, e - m.b]


def _partial_product_slip(m: ArithmeticMeta) -> list[int]:
    """Partial products added without shifting the tens row (23 × 14 → 23×1 + 23×4 = 115)."""
    if m.op != "mul" or m.a < 0 or m.b < 0 or m.b < 10:
        return []
    return [sum(m.a * d for d in _digits(m.b))]


def _remainder_ignored(m: ArithmeticMeta) -> list[int]:
    """Stopped one group early and left a whole divisor over as a "remainder" (56 ÷ 7 → 7)."""
    return [int(m.expected) - 1] if m.op == "div" else []


def _dropped_zero(m: ArithmeticMeta) -> list[int]:
    """A zero inside the quotient left out (408 ÷ 4 → 12 instead of 102)."""
    if m.op != "div":
        return []
    text = str(abs(int(m.expected)))
    if "0" not in text[1:]:
        return []
    stripped = text[0] + text[1:].replace("0", "")
    value = int(stripped)
    return [value if m.expected >= 0 else -value]


def _sign_error(m: ArithmeticMeta) -> list[int]:
    return [-int(m.expected)] if m.expected != 0 else []


ERRORS: dict[str, Callable[[ArithmeticMeta], list[int]]] = {
    "off_by_one": _off_by_one,
    "wrong_operation": _wrong_operation,
    "carry_slip": _carry_slip,
    "borrow_slip": _borrow_slip,
    "place_value_slip": _place_value_slip,
    "reversed_digits": _reversed_digits,
    "reversed_operands": _reversed_operands,
    "one_group_off": _one_group_off,
    "partial_product_slip": _partial_product_slip,
    "remainder_ignored": _remainder_ignored,
    "dropped_zero": _dropped_zero,
    "sign_error": _sign_error,
}
_NEAR_MISSES = (2, -2, 10, -10, 3, -3, 5, -5, 20, -20)


def arithmetic_distractors(meta: ArithmeticMeta, kinds: list[str], rng: Any, count: int = 3) -> list[int]:
    """``count`` distinct wrong answers from the pack's error kinds; near misses only if those run out.

    In a whole-number problem (operands and result not negative) negative candidates are dropped: no
    learner of whole-number arithmetic answers with a negative number, so it would be a giveaway.
    """
    e = int(meta.expected)
    natural = meta.a >= 0 and meta.b >= 0 and e >= 0

    def ok(v: int, seen: list[int]) -> bool:
        return v != e and v not in seen and (v >= 0 or not natural)

    candidates: list[int] = []
    for kind in kinds:
        for v in ERRORS[kind](meta):
            if ok(v, candidates):
                candidates.append(v)
    rng.shuffle(candidates)
    chosen = candidates[:count]
    for delta in _NEAR_MISSES:
        if len(chosen) >= count:
            break
        if ok(e + delta, chosen):
            chosen.append(e + delta)
    return chosen


# ------------------------------------------------------------------------------------------------
# Compilation.


def _study_text(section: Section, wants_images: bool) -> dict[str, Any]:
    content = section.content if wants_images else _IMAGE_MARKER_RE.sub("", section.content)
    metadata: dict[str, Any] = {"keywords": section.keywords}
    if section.difficulty:
        metadata["difficulty"] = section.difficulty
    if section.estimated_reading_time is not None:
        metadata["estimatedReadingTime"] = section.estimated_reading_time
    out: dict[str, Any] = {"id": section.id, "title": section.title, "content": content.strip(), "metadata": metadata}
    if section.learning_objectives:
        out["learningObjectives"] = section.learning_objectives
    return out


def _format_template(template: str, meta: ArithmeticMeta, extra: dict[str, str]) -> str:
    values = {
        "a": fmt(meta.a),
        "b": fmt(meta.b),
        "b_operand": fmt_operand(meta.b),
        "answer": fmt(int(meta.expected)),
        "expr": expression(meta),
        **extra,
    }
    return template.format(**values)


def _arithmetic_item(pack: ArithmeticPack, sk: SkeletonItem, rng: Any, related: list[str]) -> dict[str, Any]:
    meta = sk.meta
    if meta is None:
        raise ValueError(f"item {sk.id}: an arithmetic pack needs the skeleton's arithmetic")
    spec = pack.item_blueprint.groups[sk.group_id % len(pack.item_blueprint.groups)]
    templates: list[ArithmeticTemplate] = spec.cloze_templates or pack.cloze_templates
    choices = [t for t in templates if t.variant == sk.variant] or [t for t in templates if t.variant == "1"]
    if not choices:
        raise ValueError(f"pack {pack.pack_id}: no template for variant {sk.variant} or 1")
    extra: dict[str, str] = {}
    if pack.word_problem is not None:
        extra = {"name": rng.choice(pack.word_problem.names), "things": rng.choice(pack.word_problem.things)}
    text = _format_template(rng.choice(choices).text, meta, extra)
    hint = _format_template(rng.choice(spec.hint_templates or pack.hint_templates), meta, extra)
    explain = _format_template(rng.choice(spec.explain_templates or pack.explain_templates), meta, extra)
    item: dict[str, Any] = {
        "id": sk.id,
        "text": text,
        "groupId": sk.group_id,
        "clusterId": sk.cluster_id,
        "variant": sk.variant,
        "mode": sk.mode,
        "hint": hint,
        "explain": explain,
    }
    if sk.mode == "numeric":
        item["answer"] = int(meta.expected)
    else:
        values = [int(meta.expected), *arithmetic_distractors(meta, list(pack.distractors), rng)]
        rng.shuffle(values)
        item["options"] = [fmt(v) for v in values]
        item["correctIndex"] = values.index(int(meta.expected))
    if related:
        item["relatedStudyTextIds"] = related
    return item


def _knowledge_item(pack: KnowledgePack, sk: SkeletonItem, rng: Any, related: set[str]) -> dict[str, Any]:
    cluster_no = int(sk.cluster_id.rsplit("-c", 1)[1]) - 1
    facts = pack.facts_in_group(sk.group_id)
    if cluster_no >= len(facts):
        raise ValueError(f"pack {pack.pack_id}: group {sk.group_id} has no fact {cluster_no + 1}")
    fact = facts[cluster_no]
    wrong = rng.sample(pack.distractors[fact.id], 3)
    options = [fact.answer, *wrong]
    rng.shuffle(options)
    item: dict[str, Any] = {
        "id": sk.id,
        "text": fact.variants[int(sk.variant) - 1],
        "groupId": sk.group_id,
        "clusterId": sk.cluster_id,
        "variant": sk.variant,
        "mode": sk.mode,
        "options": options,
        "correctIndex": options.index(fact.answer),
        "hint": fact.hint,
        "explain": fact.explain,
    }
    if fact.section is not None and fact.section in related:
        item["relatedStudyTextIds"] = [fact.section]
    return item


def compile_pack(pack: ArithmeticPack | KnowledgePack, skeleton: Skeleton, request: CourseRequest) -> dict[str, Any]:
    """The course JSON for ``skeleton`` from ``pack``; byte-identical for the same request."""
    reason = pack.unsupported_reason(request)
    if reason:
        raise ValueError(reason)
    rng = seeded_rng(seed_string(request, pack), "compile")
    sections = {s.id: s for s in pack.sections}
    study_texts = []
    for slot in sorted(skeleton.study_text_slots, key=lambda s: s.order):
        section = sections.get(slot.id)
        if section is None:
            raise ValueError(f"pack {pack.pack_id} has no study text {slot.id!r}")
        study_texts.append({**_study_text(section, slot.wants_image), "order": slot.order})
    text_ids = [st["id"] for st in study_texts]

    if isinstance(pack, ArithmeticPack):
        items = [_arithmetic_item(pack, sk, rng, text_ids) for sk in skeleton.items]
    else:
        items = [_knowledge_item(pack, sk, rng, set(text_ids)) for sk in skeleton.items]

    course: dict[str, Any] = {
        "id": skeleton.course_id,
        "title": pack.title,
        "subject": skeleton.subject,
        "gradeBand": skeleton.grade_band,
        "locale": skeleton.locale,
        "description": pack.description,
        "contentVersion": "1",
        "groups": [g.model_dump(mode="json", by_alias=True, exclude_none=True) for g in skeleton.groups],
        "levels": [lv.model_dump(mode="json", by_alias=True, exclude_none=True) for lv in skeleton.levels],
        "items": items,
    }
    if study_texts:
        course["studyTexts"] = study_texts
    return course
