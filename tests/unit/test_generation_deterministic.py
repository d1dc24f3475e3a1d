"""Deterministic packs without a database: the strategy rules, the skeleton for the model, and the
fill and repair stages' refusals on their own (the whole pipeline through the course worker is
tests/integration/test_generation_deterministic.py)."""

from __future__ import annotations

import asyncio

import pytest

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import Group, Level
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton, SkeletonItem, StudyTextSlot
from ignite_dagster.generation.packs import default_index
from ignite_dagster.generation.stages.build_skeleton import build_skeleton
from ignite_dagster.generation.stages.fill import fill
from ignite_dagster.generation.stages.repair import repair_round
from ignite_dagster.generation.stages.select_strategy import select_strategy
from ignite_dagster.generation.stages.validate_normalize import validate_and_normalize
from ignite_dagster.generation.types import GenerationDeps, GenerationFailed, StrategyChoice

INDEX = default_index()


def req(**kw) -> CourseRequest:
    data = {"course_id": "add-k2", "subject": "Addition", "grade": "1"}
    data.update(kw)
    return CourseRequest.model_validate(data)


# ------------------------------------------------------------------ select_strategy


def test_matching_pack_without_notes_is_deterministic():
    choice = select_strategy(req(), INDEX, model_configured=True)
    assert (choice.kind, choice.pack_id) == ("deterministic", "addition.gK-2")


def test_notes_send_the_request_to_the_model():
    choice = select_strategy(req(notes="Use farm animals"), INDEX, model_configured=True)
    assert choice.kind == "llm" and "notes" in choice.reason


def test_no_pack_goes_to_the_model():
    choice = select_strategy(req(subject="Fractions"), INDEX, model_configured=True)
    assert choice.kind == "llm" and "no pack" in choice.reason


def test_unsupported_pack_request_goes_to_the_model():
    choice = select_strategy(req(subject="water cycle", grade="4", mode="numeric"), INDEX, model_configured=True)
    assert choice.kind == "llm" and "numeric" in choice.reason


def test_a_pack_is_never_served_outside_its_grade_bands():
    """Ancient Egypt is written for grades 6-8: a K-2 request is the model's, never the pack relabelled."""
    egypt = INDEX.find("ancient egypt")
    assert egypt is not None and egypt.grade_bands == ("6-8",)
    assert select_strategy(req(subject="ancient egypt", grade="7"), INDEX, True).kind == "deterministic"
    choice = select_strategy(req(subject="ancient egypt", grade="1"), INDEX, model_configured=True)
    assert choice.kind == "llm" and "written for grades 6-8, not K-2" in choice.reason
    with pytest.raises(GenerationFailed) as exc:
        select_strategy(req(subject="ancient egypt", grade="1"), INDEX, model_configured=False)
    assert exc.value.reason_code == "model_not_configured" and "6-8" in exc.value.message
    with pytest.raises(GenerationFailed) as exc:
        select_strategy(req(subject="ancient egypt", grade="1", strategy="deterministic"), INDEX, True)
    assert exc.value.reason_code == "invalid_request"


@pytest.mark.parametrize("kw", [{"subject": "Fractions"}, {"notes": "more word problems"}, {"strategy": "llm"}])
def test_needing_the_model_without_one_fails_loudly(kw):
    with pytest.raises(GenerationFailed) as exc:
        select_strategy(req(**kw), INDEX, model_configured=False)
    err = exc.value
    assert err.reason_code == "model_not_configured" and err.retryable is False
    assert "OPENAI_API_KEY" in err.message and "IGNITE_TEXT_MODEL" in err.message


def test_explicit_strategy_wins():
    assert select_strategy(req(strategy="llm"), INDEX, model_configured=True).kind == "llm"
    choice = select_strategy(req(strategy="deterministic", notes="ignored by packs"), INDEX, model_configured=False)
    assert (choice.kind, choice.pack_id) == ("deterministic", "addition.gK-2") and "notes" in choice.reason


def test_explicit_deterministic_without_a_pack_is_no_pack():
    with pytest.raises(GenerationFailed) as exc:
        select_strategy(req(subject="Fractions", strategy="deterministic"), INDEX, model_configured=True)
    assert exc.value.reason_code == "no_pack" and exc.value.retryable is False
    assert "addition" in exc.value.message  # lists what exists


def test_explicit_deterministic_that_the_pack_cannot_serve_is_invalid_request():
    with pytest.raises(GenerationFailed) as exc:
        select_strategy(req(subject="ancient egypt", grade="7", mode="numeric", strategy="deterministic"), INDEX, True)
    assert exc.value.reason_code == "invalid_request" and "numeric" in exc.value.message


def test_llm_strategy_without_a_filler_fails_at_fill():
    choice = StrategyChoice(kind="llm", reason="test")
    skeleton = build_skeleton(req(subject="Fractions"), choice, None, INDEX)
    with pytest.raises(GenerationFailed) as exc:
        asyncio.run(fill(skeleton, req(subject="Fractions"), choice, GenerationDeps(), None))
    assert exc.value.reason_code == "model_not_configured"


def test_llm_skeleton_for_an_arithmetic_subject_carries_exact_problems():
    choice = StrategyChoice(kind="llm", reason="notes")
    skeleton = build_skeleton(req(notes="farm theme"), choice, INDEX.find("addition", "K-2", "1"), INDEX)
    assert all(sk.meta is not None and sk.meta.a + sk.meta.b == sk.meta.expected for sk in skeleton.items)
    nine_twelve = build_skeleton(req(grade="10"), choice, None, INDEX)  # no pack for 9-12: nearest band's ranges
    assert nine_twelve.topic == "addition" and all(sk.meta is not None for sk in nine_twelve.items)
    plain = build_skeleton(req(subject="Fractions", levels_count=5, items_per_group=2, groups_count=1), choice, None, INDEX)
    assert all(sk.meta is None for sk in plain.items) and len(plain.levels) == 2  # levels bounded by items
    assert [sk.variant for sk in plain.items] == ["1", "2"] and len(plain.study_text_slots) == 2


# ------------------------------------------------------------------ repair loop refusals


def test_repair_stage_refuses_non_item_errors_first():
    skeleton = Skeleton(
        course_id="c", subject="s", grade_band="3-5", mode="numeric",
        groups=[Group(id=0, name="G")], levels=[Level(id=1, title="L", start=0, end=0)],
        items=[SkeletonItem(id=0, groupId=0, clusterId="g0-c1", variant="1", mode="numeric")],
        study_text_slots=[StudyTextSlot(id="s1", order=0)],
    )
    draft = {"title": "T", "items": [{"id": 0, "text": "2 + 2 = [blank]", "groupId": 0, "clusterId": "g0-c1",
                                      "variant": "1", "mode": "numeric", "answer": 4}]}
    course, issues = validate_and_normalize(draft, skeleton, None)
    assert course is not None and [(i.code, i.item_id) for i in issues] == [("unfilled_content", None)]
    with pytest.raises(GenerationFailed, match="name no item"):
        asyncio.run(repair_round(course.to_dict(), issues, skeleton, req(), GenerationDeps(), 1))
    item_issue = [Issue(code="missing_answer", severity="error", message="m", itemId=0)]
    with pytest.raises(GenerationFailed, match="no text model"):
        asyncio.run(repair_round(course.to_dict(), item_issue, skeleton, req(), GenerationDeps(), 1))
