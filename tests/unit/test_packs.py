"""Every shipped pack: loads, compiles schema-valid, passes its own gates, is deterministic, and (for
arithmetic) every answer is recomputed independently from the item's text and the skeleton's numbers."""

from __future__ import annotations

import json
import operator
import re
from pathlib import Path

import pytest

from ignite_dagster.course.model import parse_course
from ignite_dagster.course.normalize import normalize_course
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.validation import count_blanks, validate_course
from ignite_dagster.generation.deterministic import compile_pack
from ignite_dagster.generation.packs import ArithmeticPack, KnowledgePack, PackIndex, default_index, find_pack
from ignite_dagster.generation.stages.build_skeleton import build_skeleton
from ignite_dagster.generation.types import StrategyChoice

INDEX = default_index()
PACKS = sorted(INDEX.by_key.items())
ARITH = [(k, p) for k, p in PACKS if isinstance(p, ArithmeticPack)]
KNOWLEDGE = [(k, p) for k, p in PACKS if isinstance(p, KnowledgePack)]
OPS = {"+": operator.add, "-": operator.sub, "×": operator.mul, "÷": operator.floordiv}
PY_OP = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.floordiv}
NUMBER_RE = re.compile(r"\(?-?\d[\d,]*\)?")
EXPR_RE = re.compile(r"^(\(?-?[\d,]+\)?) ([+\-×÷]) (\(?-?[\d,]+\)?) = \[blank\]$")


def as_int(token: str) -> int:
    return int(token.strip("()").replace(",", ""))


def request_for(pack, mode: str = "options", **kw) -> CourseRequest:
    grade = pack.grade or "4"
    band = grade if "-" in grade else None
    return CourseRequest(course_id="pack-test", subject=pack.topic.replace("-", " "), grade_band=band,
                         grade=None if band else grade, mode=mode, **kw)


def compile_for(pack, mode: str = "options", **kw):
    req = request_for(pack, mode, **kw)
    choice = StrategyChoice(kind="deterministic", pack_id=pack.pack_id, reason="test")
    skeleton = build_skeleton(req, choice, pack, INDEX)
    return req, skeleton, compile_pack(pack, skeleton, req)


def modes_of(pack) -> list[str]:
    return list(pack.modes)


def test_shipped_packs_cover_the_four_operations_in_three_bands_and_three_knowledge_topics():
    have = {(p.topic, p.grade) for _, p in ARITH}
    for topic in ("addition", "subtraction", "multiplication", "division"):
        for band in ("K-2", "3-5", "6-8"):
            assert (topic, band) in have
    assert {p.topic for _, p in KNOWLEDGE} >= {"water-cycle", "parts-of-speech", "ancient-egypt"}


@pytest.mark.parametrize("key,pack", PACKS, ids=[k for k, _ in PACKS])
def test_pack_compiles_valid_clean_and_within_its_gates(key, pack):
    for mode in modes_of(pack):
        _, skeleton, draft = compile_for(pack, mode)
        course, issues = parse_course(draft)
        assert course is not None, issues
        assert normalize_course(course, skeleton).to_json_bytes() == course.to_json_bytes(), "packs compile already normal"
        assert validate_course(course, skeleton, pack.gates) == []  # no errors and no warnings
        assert len(course.items) == len(skeleton.items) == 12 * len(pack.item_blueprint.groups)
        for st in course.study_texts or []:
            assert "[SECTION:" in st.content
        for item in course.items:
            assert item.hint and item.explain
            if mode == "numeric":
                assert item.options is None and isinstance(item.answer, int)
            else:
                assert len(item.options) == 4 and len({o.casefold() for o in item.options}) == 4


@pytest.mark.parametrize("key,pack", PACKS, ids=[k for k, _ in PACKS])
def test_pack_compiles_byte_identically(key, pack):
    for mode in modes_of(pack):
        _, _, a = compile_for(pack, mode)
        _, _, b = compile_for(pack, mode)
        assert json.dumps(a, sort_keys=True, ensure_ascii=False) == json.dumps(b, sort_keys=True, ensure_ascii=False)


def test_the_seed_depends_on_the_request():
    _, pack = ARITH[0]
    _, _, a = compile_for(pack)
    req = request_for(pack).model_copy(update={"subject": "adding up"})
    skeleton = build_skeleton(req, StrategyChoice(kind="deterministic", pack_id=pack.pack_id, reason="t"), pack, INDEX)
    b = compile_pack(pack, skeleton, req)
    assert [i["text"] for i in a["items"]] != [i["text"] for i in b["items"]]


@pytest.mark.parametrize("key,pack", ARITH, ids=[k for k, _ in ARITH])
def test_arithmetic_answers_recomputed_independently(key, pack):
    for mode in ("options", "numeric"):
        _, skeleton, draft = compile_for(pack, mode)
        expressions_checked = 0
        for sk, item in zip(skeleton.items, draft["items"], strict=True):
            meta = sk.meta
            assert meta is not None and meta.op == pack.op
            if pack.op == "div":
                assert meta.b != 0 and meta.a % meta.b == 0, "divisions are exact"
            truth = PY_OP[meta.op](meta.a, meta.b)
            assert truth == meta.expected
            numbers = [as_int(t) for t in NUMBER_RE.findall(item["text"])]
            assert meta.a in numbers and meta.b in numbers, f"text does not show the problem: {item['text']}"
            m = EXPR_RE.match(item["text"])
            if m:
                left, sym, right = as_int(m.group(1)), m.group(2), as_int(m.group(3))
                assert OPS[sym](left, right) == truth, item["text"]
                expressions_checked += 1
            if mode == "numeric":
                assert item["answer"] == truth
            else:
                values = [as_int(o) for o in item["options"]]
                assert values[item["correctIndex"]] == truth
                assert values.count(truth) == 1, "exactly one correct option"
                if meta.a >= 0 and meta.b >= 0 and truth >= 0:
                    assert min(values) >= 0, "no negative distractors for whole-number problems"
        assert expressions_checked > 0


@pytest.mark.parametrize("key,pack", ARITH, ids=[k for k, _ in ARITH])
def test_operands_stay_in_the_bands_ranges(key, pack):
    _, skeleton, _ = compile_for(pack)
    specs = pack.item_blueprint.groups
    for sk in skeleton.items:
        spec = specs[sk.group_id]
        first, second = (sk.meta.expected, sk.meta.b) if pack.op == "div" else (sk.meta.a, sk.meta.b)
        for value, rng, values in ((first, spec.first, spec.first_values), (second, spec.second, spec.second_values)):
            assert (values is not None and value in values) or (rng is not None and rng[0] <= value <= rng[1])
        if spec.min_result is not None:
            assert sk.meta.expected >= spec.min_result
        if spec.max_result is not None:
            assert sk.meta.expected <= spec.max_result


def test_distractors_model_real_errors():
    from ignite_dagster.course.skeleton import ArithmeticMeta
    from ignite_dagster.generation.deterministic import ERRORS

    add = ArithmeticMeta(op="add", a=47, b=38, expected=85)
    assert ERRORS["carry_slip"](add) == [75]  # forgot to carry the ten
    assert ERRORS["place_value_slip"](ArithmeticMeta(op="add", a=345, b=27, expected=372)) == [615]
    sub = ArithmeticMeta(op="sub", a=52, b=17, expected=35)
    assert ERRORS["reversed_digits"](sub) == [45]  # smaller digit from larger
    assert ERRORS["borrow_slip"](ArithmeticMeta(op="sub", a=52, b=19, expected=33)) == [43]
    assert ERRORS["partial_product_slip"](ArithmeticMeta(op="mul", a=23, b=14, expected=322)) == [115]
    div = ArithmeticMeta(op="div", a=408, b=4, expected=102)
    assert ERRORS["dropped_zero"](div) == [12]
    assert ERRORS["remainder_ignored"](div) == [101]
    assert ERRORS["wrong_operation"](ArithmeticMeta(op="mul", a=6, b=7, expected=42)) == [13]


@pytest.mark.parametrize("key,pack", KNOWLEDGE, ids=[k for k, _ in KNOWLEDGE])
def test_knowledge_items_use_the_facts_answer(key, pack):
    _, skeleton, draft = compile_for(pack)
    facts = {f.id: f for f in pack.cloze_templates}
    for sk, item in zip(skeleton.items, draft["items"], strict=True):
        fact = next(f for f in facts.values() if item["text"] in f.variants)
        assert fact.group == sk.group_id
        assert item["options"][item["correctIndex"]] == fact.answer
        assert set(item["options"]) - {fact.answer} <= set(pack.distractors[fact.id])
        assert item["relatedStudyTextIds"] == [fact.section]
    for fact in pack.cloze_templates:
        assert all(count_blanks(v) == 1 for v in fact.variants)


@pytest.mark.parametrize("key,pack", KNOWLEDGE, ids=[k for k, _ in KNOWLEDGE])
def test_knowledge_packs_refuse_numeric_mode(key, pack):
    reason = pack.unsupported_reason(request_for(pack, "numeric"))
    assert reason and "numeric" in reason


def test_knowledge_pack_refuses_more_items_than_it_has_facts():
    pack = INDEX.get("water-cycle")
    assert pack.unsupported_reason(request_for(pack, items_per_group=13))
    assert pack.unsupported_reason(request_for(pack, items_per_group=12)) is None


def test_image_markers_only_when_images_are_wanted():
    pack = INDEX.get("water-cycle")
    _, _, without = compile_for(pack)
    _, _, with_images = compile_for(pack, wants_images=True)
    assert all("[IMAGE:" not in st["content"] for st in without["studyTexts"])
    assert all("[IMAGE:" in st["content"] for st in with_images["studyTexts"])


def test_fewer_study_texts_groups_and_levels_on_request():
    pack = INDEX.get("ancient-egypt")
    _, skeleton, draft = compile_for(pack, study_texts_count=1, groups_count=2, levels_count=4, items_per_group=6)
    assert [st["id"] for st in draft["studyTexts"]] == ["gift-of-the-nile"]
    assert len(draft["groups"]) == 2 and len(draft["items"]) == 12
    assert [(lv["start"], lv["end"]) for lv in draft["levels"]] == [(0, 2), (3, 5), (6, 8), (9, 11)]
    course, _ = parse_course(draft)
    assert validate_course(course, skeleton, pack.gates) == []


@pytest.mark.parametrize(
    "subject,band,grade,expected",
    [
        ("Addition", None, "1", "addition.gK-2"),
        ("adding", "3–5", None, "addition.g3-5"),
        ("Times Tables", None, "4", "multiplication.g3-5"),
        ("take away", "K-2", None, "subtraction.gK-2"),
        ("Dividing", None, "7", "division.g6-8"),
        ("The Water Cycle", None, "4", "water-cycle"),
        ("water cycle", None, "K", "water-cycle"),  # grade-free file as the fallback
        ("Parts of Speech", "3-5", None, "parts-of-speech"),
        ("ancient egyptians", "6-8", None, "ancient-egypt"),
        ("addition", None, "10", None),  # no 9-12 arithmetic pack
        ("fractions", "3-5", None, None),
    ],
)
def test_find_pack_by_alias_and_grade(subject, band, grade, expected):
    req = CourseRequest(course_id="x", subject=subject, grade_band=band, grade=grade)
    pack = find_pack(req.subject, req.grade_band, req.grade)
    assert (pack.pack_id if pack else None) == expected


def test_exact_grade_file_wins_over_band(tmp_path: Path):
    data = json.loads(default_index().by_key["addition.g3-5"].model_dump_json())
    (tmp_path / "addition.g3-5.json").write_text(json.dumps(data))
    data["pack_id"] = "addition.g4"
    (tmp_path / "addition.g4.json").write_text(json.dumps(data))
    index = PackIndex.from_dir(tmp_path)
    assert index.find("addition", "3-5", "4").pack_id == "addition.g4"
    assert index.find("addition", "3-5", "5").pack_id == "addition.g3-5"


def test_misnamed_or_broken_pack_files_fail_loudly(tmp_path: Path):
    data = json.loads(default_index().by_key["addition.g3-5"].model_dump_json())
    (tmp_path / "sums.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="name must be"):
        PackIndex.from_dir(tmp_path)
    (tmp_path / "sums.json").unlink()
    (tmp_path / "addition.json").write_text('{"pack_id": "x"}')
    with pytest.raises(ValueError, match="addition.json is invalid"):
        PackIndex.from_dir(tmp_path)
