"""Skeleton + LLM fill end to end: the course worker with ``ModelWriter`` against the loopback server.

The scripted model (``ScriptedCourseModel``) answers from what the prompt says, like a real model, so
these tests exercise the real prompts, structured outputs, batching, concurrency, enforcement of the
skeleton and the worker's validate/repair stages (real Postgres and storage).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ignite_dagster.config import Settings
from ignite_dagster.course.model import Group, Level
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton, SkeletonItem, StudyTextSlot
from ignite_dagster.generation.llm import PROMPT_VERSION, ModelWriter
from ignite_dagster.generation.packs import ArithmeticPack, PackIndex
from ignite_dagster.generation.stages.validate_normalize import validate_and_normalize
from ignite_dagster.generation.types import GenerationFailed
from ignite_dagster.storage.local import LocalObjectStore
from tests.support.generate import Generated, generate
from tests.support.openai_server import (
    CHAT,
    OpenAICompatServer,
    ScriptedCourseModel,
    chat_refusal,
    chat_truncated,
    quota_exceeded,
    rate_limited,
    server_error,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
PRICES = json.dumps({"test-model": {"input": 0.15, "output": 0.6}})


class NoSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def settings_for(server: OpenAICompatServer, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": "test-key", "openai_base_url": server.base_url, "text_model": "test-model",
        "llm_concurrency": 4, "llm_max_retries": 3, "llm_timeout_seconds": 5.0, "llm_max_output_tokens": 2000,
        "llm_prices": PRICES,
    }
    values.update(kw)
    return Settings(**values)


def addition_pack() -> ArithmeticPack:
    """A small arithmetic pack so the skeleton carries exact ``meta`` for every item."""
    return ArithmeticPack.model_validate({
        "kind": "arithmetic", "pack_id": "test-addition", "version": "1", "topic": "addition", "grade": "K-2",
        "title": "Addition", "description": "Adding within 20.", "op": "add",
        "sections": [
            {"id": "adding-on", "title": "Counting on", "content": "[SECTION:Counting on]\nStart big."},
            {"id": "checking", "title": "Checking", "content": "[SECTION:Checking]\nCount again."},
        ],
        "item_blueprint": {
            "groups": [{"name": "Within 10", "first": [1, 5], "second": [1, 4]},
                       {"name": "Within 20", "first": [6, 12], "second": [2, 8]}],
            "items_per_group": 6,
            "levels": [{"title": "Warm up"}, {"title": "Practice"}],
        },
        "cloze_templates": [{"variant": "1", "text": "{expr} = [blank]"}],
        "hint_templates": ["Count on."], "explain_templates": ["{expr} makes the total."],
        "distractors": ["off_by_one", "wrong_operation", "reversed_digits"],
    })


PACKS = PackIndex({"addition.gK-2": addition_pack()})


def arithmetic_request(**kw: Any) -> dict[str, Any]:
    req = {
        "course_id": "add-fruit", "subject": "addition", "grade": "1", "items_per_group": 6, "mode": "options",
        "notes": "Use fruit in every word problem.", "strategy": "llm", "wants_images": True,
    }
    req.update(kw)
    return req


def _sum_in(text: str) -> int:
    """The sum the scripted model wrote into an item ("Item 3: 4 + 5 = [blank]")."""
    a, b = re.search(r"(\d+) \+ (\d+)", text).groups()
    return int(a) + int(b)


def model_calls_of(server: OpenAICompatServer, schema_name: str) -> int:
    return sum(1 for r in server.requests_to(CHAT) if r.json["response_format"]["json_schema"]["name"] == schema_name)


@pytest.fixture
def server():
    with OpenAICompatServer() as srv:
        yield srv


@pytest.fixture
def run(db_url, org_id, tmp_path):
    """``run(request, filler, store=None, packs=PACKS)``: one course through the production worker."""
    def go(request: dict[str, Any], filler: ModelWriter, store: LocalObjectStore | None = None,
           packs: PackIndex = PACKS) -> Generated:
        return generate(db_url, org_id, request, store=store or LocalObjectStore(tmp_path / "run-store"),
                        llm=filler, packs=packs, now=NOW)
    return go


def test_fill_produces_valid_course_with_skeleton_enforced(server, run):
    model = ScriptedCourseModel()
    server.respond_with(CHAT, model)
    filler = ModelWriter(settings_for(server), sleep=NoSleep())
    result = run(arithmetic_request(), filler)

    course = result.course
    assert course.id == "add-fruit" and course.title == "Practice course: addition"
    assert len(course.items) == 12 and [g.name for g in course.groups] == ["Within 10", "Within 20"]
    assert result.telemetry.repair_rounds == 0
    for item in course.items:
        assert item.mode == "options" and len(item.options) == 4
        assert item.text.count("[blank]") == 1
        assert item.hint and item.explain
    # study texts: one per skeleton slot, with section and image markers (images were asked for)
    assert [st.id for st in course.study_texts] == ["adding-on", "checking"]
    for st in course.study_texts:
        assert "[SECTION:" in st.content and "[IMAGE:" in st.content
        assert st.metadata.keywords and st.learning_objectives
    gen = course.generation
    assert (gen.strategy, gen.provider, gen.model, gen.prompt_version) == ("llm", "openai-compatible", "test-model", PROMPT_VERSION)
    # one overview + one per study text + one batch per group
    assert dict(model.calls) == {"CourseOverview": 1, "StudyTextOut": 2, "ItemBatch": 2}
    t = result.telemetry
    assert t.calls == 5 == len(server.requests_to(CHAT)) and t.cache_hits == 0
    assert t.tokens_in > 0 and t.tokens_out > 0
    assert t.cost_usd == (Decimal(t.tokens_in) * Decimal("0.15") + Decimal(t.tokens_out) * Decimal("0.6")) / Decimal(10**6)


def test_prompts_carry_subject_band_mode_notes_and_source(server, run):
    server.respond_with(CHAT, ScriptedCourseModel())
    filler = ModelWriter(settings_for(server), sleep=NoSleep())
    run(arithmetic_request(study_text="Apples and pears are fruit. " * 20), filler)
    for req in server.requests_to(CHAT):
        text = req.text()
        assert "Subject: addition" in text and "Grade band: K-2 (grade 1)" in text
        assert "Use fruit in every word problem." in text
        assert "Apples and pears are fruit." in text
    item_prompts = [r.text() for r in server.requests_to(CHAT) if r.json["response_format"]["json_schema"]["name"] == "ItemBatch"]
    assert all('"arithmetic"' in p and '"mode": "options"' in p for p in item_prompts)


def test_arithmetic_answers_come_from_the_skeleton(server, run):
    """A model that points at the wrong option or states a wrong number is corrected without repair."""
    server.respond_with(CHAT, ScriptedCourseModel(faults={i: "wrong_index" for i in range(12)}))
    result = run(arithmetic_request(), ModelWriter(settings_for(server), sleep=NoSleep()))
    assert result.telemetry.repair_rounds == 0
    for item in result.course.items:
        assert float(item.options[item.correct_index]) == _sum_in(item.text)

    server.reset()
    server.respond_with(CHAT, ScriptedCourseModel(faults={i: "wrong_numeric" for i in range(12)}))
    result = run(arithmetic_request(course_id="add-numeric", mode="numeric"), ModelWriter(settings_for(server), sleep=NoSleep()))
    assert result.telemetry.repair_rounds == 0
    for item in result.course.items:
        assert item.answer == _sum_in(item.text) and item.options is None


def test_knowledge_subject_without_pack(server, run):
    server.respond_with(CHAT, ScriptedCourseModel())
    filler = ModelWriter(settings_for(server), sleep=NoSleep())
    request = {"course_id": "photo", "subject": "Photosynthesis", "grade_band": "6-8", "items_per_group": 4,
               "notes": "Focus on leaves."}
    result = run(request, filler, packs=PackIndex({}))
    assert len(result.course.items) == 12 and len(result.course.study_texts) == 2
    assert all("[IMAGE:" not in st.content for st in result.course.study_texts)  # no images asked for
    # the plan named the groups by skill, and every item points at the study text its group practises
    assert [g.name for g in result.course.groups] == ["Skill A", "Skill B", "Skill C"]
    texts = {st.id for st in result.course.study_texts}
    assert all(it.related_study_text_ids and set(it.related_study_text_ids) <= texts for it in result.course.items)
    assert [lv.title for lv in result.course.levels][0] == "Stage 1 of practice"
    assert model_calls_of(server, "CoursePlan") == 1


def test_usage_counts_failed_attempts(server, run):
    """429 (retry-after honoured), 500 and a truncated answer cost attempts and tokens; all are counted."""
    model = ScriptedCourseModel()
    server.enqueue(CHAT, rate_limited(retry_after=1.5), server_error(500), chat_truncated(completion_tokens=2000))
    server.respond_with(CHAT, model)
    sleep = NoSleep()
    filler = ModelWriter(settings_for(server, llm_concurrency=1), sleep=sleep)
    result = run(arithmetic_request(), filler)
    t = result.telemetry
    assert t.calls == 5 + 3 == len(server.requests_to(CHAT))
    assert sleep.delays[0] == 1.5 and len(sleep.delays) == 2
    assert t.tokens_out >= 2000  # the truncated attempt's tokens
    # budgets are sized from each call's schema (never above the setting); only the retry after the
    # truncation doubled its own
    by_schema: dict[str, set[int]] = {}
    for r in server.requests_to(CHAT):
        by_schema.setdefault(json.dumps(r.json["response_format"], sort_keys=True), set()).add(r.max_tokens)
    doubled = [sorted(v) for v in by_schema.values() if len(v) > 1]
    assert len(doubled) == 1 and doubled[0][1] == 2 * doubled[0][0]
    assert all(min(v) <= 2000 for v in by_schema.values())


def test_batches_respect_size_bound_and_concurrency_limit(server, run):
    server.latency = 0.05
    server.respond_with(CHAT, ScriptedCourseModel())
    filler = ModelWriter(settings_for(server, llm_concurrency=3), items_per_call=4, sleep=NoSleep())
    result = run(arithmetic_request(items_per_group=10, wants_images=False), filler)
    batches = [r for r in server.requests_to(CHAT) if r.json["response_format"]["json_schema"]["name"] == "ItemBatch"]
    assert len(batches) == 2 * math.ceil(10 / 4)
    assert server.max_in_flight == 3
    assert len(result.course.items) == 20


def test_plan_matches_calls_made(server):
    filler = ModelWriter(settings_for(server), items_per_call=5)
    skeleton = Skeleton(
        course_id="c", subject="s", grade_band="3-5", mode="options",
        groups=[Group(id=g, name=f"G{g}") for g in range(4)],
        levels=[Level(id=1, title="All", start=0, end=47)],
        items=[SkeletonItem(id=i, groupId=i // 12, clusterId=f"c{i // 3}", variant=str(i % 3 + 1), mode="options") for i in range(48)],
        study_text_slots=[StudyTextSlot(id="st-1", order=0)],
    )
    plan = filler.plan(skeleton)
    kinds = [c.kind for c in plan]
    assert kinds.count("overview") == 1 and kinds.count("study_text") == 1 and kinds.count("items") == 4 * 3
    assert all(len(c.item_ids) <= 5 for c in plan)


def test_cache_second_run_makes_no_provider_calls(server, tmp_path: Path, run):
    store = LocalObjectStore(tmp_path)
    server.respond_with(CHAT, ScriptedCourseModel())
    first = run(arithmetic_request(), ModelWriter(settings_for(server), store, sleep=NoSleep()), store)
    made = len(server.requests_to(CHAT))
    second = run(arithmetic_request(), ModelWriter(settings_for(server), store, sleep=NoSleep()), store)
    assert len(server.requests_to(CHAT)) == made  # zero provider calls
    assert second.telemetry.calls == 0 and second.telemetry.cache_hits == made
    assert second.telemetry.tokens_in == 0 and second.telemetry.cost_usd == 0
    assert {k: v for k, v in second.doc.items() if k != "generation"} == {
        k: v for k, v in first.doc.items() if k != "generation"}
    assert list(tmp_path.joinpath("courses/debug/llm-cache").rglob("*.json"))


def test_a_fills_answers_are_one_cache_object_and_a_failed_fill_keeps_those_it_got(server, tmp_path: Path, run):
    """The answers of a fill are read and written as one object (not one per call), and a fill that fails
    still saves the answers it had: the rerun asks the model only for the calls that had not answered."""
    store = LocalObjectStore(tmp_path)
    model, seen = ScriptedCourseModel(), []

    def third_refused(request):
        seen.append(request)
        return chat_refusal("not this one") if len(seen) == 3 else model(request)

    server.respond_with(CHAT, third_refused)
    filler = ModelWriter(settings_for(server, llm_concurrency=1), store, sleep=NoSleep())  # calls in order
    with pytest.raises(GenerationFailed) as err:
        run(arithmetic_request(), filler, store)
    assert err.value.reason_code == "content_refused"
    cache_root = tmp_path / "courses/debug/llm-cache"
    assert [p.relative_to(cache_root).parts[0] for p in cache_root.rglob("*.json")] == ["fills"]

    server.respond_with(CHAT, model)
    before = len(server.requests_to(CHAT))
    again = run(arithmetic_request(), ModelWriter(settings_for(server, llm_concurrency=1), store, sleep=NoSleep()), store)
    total = len(ModelWriter(settings_for(server), store).plan(again.work.skeleton))
    assert again.telemetry.cache_hits >= 1  # at least the overview, answered before the refusal
    assert again.telemetry.calls + again.telemetry.cache_hits == total
    assert len(server.requests_to(CHAT)) - before == again.telemetry.calls
    assert len(list(cache_root.rglob("*.json"))) == 1  # the same fill's object, rewritten


def test_quota_fails_fast_with_clear_code(server, run):
    server.enqueue(CHAT, quota_exceeded())
    server.respond_with(CHAT, ScriptedCourseModel())
    filler = ModelWriter(settings_for(server, llm_concurrency=1), sleep=NoSleep())
    with pytest.raises(GenerationFailed) as err:
        run(arithmetic_request(), filler)
    assert err.value.reason_code == "provider_quota" and err.value.retryable is False
    assert len(server.requests_to(CHAT)) == 1
    assert err.value.usage.calls == 1


def test_refusal_fails_the_fill_as_content_refused(server, run):
    server.enqueue(CHAT, chat_refusal("I won't write that."))
    server.respond_with(CHAT, ScriptedCourseModel())
    filler = ModelWriter(settings_for(server, llm_concurrency=1), sleep=NoSleep())
    with pytest.raises(GenerationFailed) as err:
        run(arithmetic_request(), filler)
    assert err.value.reason_code == "content_refused" and not err.value.retryable


def test_an_unknown_schema_keyword_setting_is_a_named_configuration_error(server, run):
    filler = ModelWriter(settings_for(server, llm_schema_drop="pattern,maxLength"))
    with pytest.raises(GenerationFailed) as err:
        run(arithmetic_request(), filler)
    assert err.value.reason_code == "model_not_configured" and "IGNITE_LLM_SCHEMA_DROP" in err.value.message
    assert server.requests_to(CHAT) == []


def test_missing_model_is_model_not_configured(server, run):
    filler = ModelWriter(Settings(openai_base_url=server.base_url))
    with pytest.raises(GenerationFailed) as err:
        run(arithmetic_request(), filler)
    assert err.value.reason_code == "model_not_configured" and not err.value.retryable
    assert "OPENAI_API_KEY" in err.value.message and "IGNITE_TEXT_MODEL" in err.value.message
    assert server.requests_to(CHAT) == []


def test_unpriced_model_reports_cost_as_incomplete(server):
    server.respond_with(CHAT, ScriptedCourseModel())
    filler = ModelWriter(settings_for(server, llm_prices=None), sleep=NoSleep())
    skeleton = Skeleton(
        course_id="c", subject="s", grade_band="3-5", mode="numeric",
        groups=[Group(id=0, name="G")], levels=[Level(id=1, title="All", start=0, end=2)],
        items=[SkeletonItem(id=i, groupId=0, clusterId="c1", variant=str(i + 1), mode="numeric",
                            meta=ArithmeticMeta(op="mul", a=3, b=i + 2, expected=3 * (i + 2))) for i in range(3)],
    )
    request = CourseRequest(course_id="c", subject="s", grade_band="3-5", mode="numeric")
    result = asyncio.run(filler.fill(skeleton, request))
    assert result.cost_known is False and result.unpriced_models == ["test-model"]
    assert result.usage.tokens_in > 0
    assert [it["answer"] for it in result.course["items"]] == [6, 9, 12]
    course, issues = validate_and_normalize(result.course, skeleton, None)
    assert course is not None and [i for i in issues if i.severity == "error"] == []


@pytest.mark.parametrize(("name", "objectives", "expected"), [
    ("Comparing fractions", ["1. Compare two fractions"], "Comparing fractions"),
    # a numbered placeholder (what SmolLM2-135M sometimes writes) gives way to the model's own objective
    ("Part 1", ["1. Understand the concept of fractions", "2. Practice fractions"], "Understand the concept of fractions"),
    ("group 2:", ["Add fractions with like denominators"], "Add fractions with like denominators"),
    ("Part 3", [], None),  # nothing better: the skeleton keeps its placeholder
    (None, ["  3)  Order fractions  "], "Order fractions"),
])
def test_a_plans_placeholder_group_name_is_replaced_by_its_first_objective(name, objectives, expected):
    from ignite_dagster.generation.llm.schemas import PlanGroup
    from ignite_dagster.generation.llm.writer import group_name

    assert group_name(PlanGroup(name=name, objectives=objectives)) == expected


def test_a_plans_repeated_group_name_gives_way_to_the_groups_own_objective():
    """SmolLM2-135M names every group after the subject ("The Solar System" ×3); each group's objective
    names its skill, so the second and third group take theirs and the names are distinct."""
    from ignite_dagster.generation.llm.schemas import CoursePlan, PlanGroup
    from ignite_dagster.generation.llm.writer import apply_plan
    from ignite_dagster.generation.stages.build_skeleton import build_skeleton
    from ignite_dagster.generation.types import StrategyChoice

    skeleton = build_skeleton(CourseRequest(course_id="c", subject="the solar system", grade_band="3-5",
                                            items_per_group=3, groups_count=3),
                              StrategyChoice(kind="llm", reason="t"), None)
    plan = CoursePlan(title="The Solar System", description="Planets and the sun", levels=[], studyTexts=[],
                      groups=[PlanGroup(name="The Solar System", objectives=["Name the planets"]),
                              PlanGroup(name="The solar  system", objectives=["Order planets by size"]),
                              PlanGroup(name="The Solar System", objectives=["The solar system", "Explain orbits"])])
    names = [g.name for g in apply_plan(skeleton, plan).groups]
    assert names == ["The Solar System", "Order planets by size", "Explain orbits"]
