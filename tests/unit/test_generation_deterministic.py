"""The pipeline with deterministic packs, through the production course worker (real Postgres, real
storage): strategy rules, byte-identical courses, progress, artifacts, and the repair loop's refusals
(the LLM tests cover convergence against a loopback server)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import Group, Level, parse_course
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton, SkeletonItem, StudyTextSlot
from ignite_dagster.course.validation import validate_course
from ignite_dagster.generation.fill import fill
from ignite_dagster.generation.packs import PackIndex, default_index
from ignite_dagster.generation.repair import repair_round
from ignite_dagster.generation.skeleton import build_skeleton
from ignite_dagster.generation.strategy import select_strategy
from ignite_dagster.generation.types import GenerationDeps, GenerationFailed, StrategyChoice
from ignite_dagster.generation.validate import validate_and_normalize
from tests.support.generate import generate

NOW = datetime(2024, 9, 1, 8, 30, tzinfo=UTC)
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


# ------------------------------------------------------------------ whole pipeline (the course worker)


@pytest.fixture
def gen(db_url, org_id, tmp_path):
    """``gen(request, **kw)``: one course through submit → claim → every worker stage."""
    def run(request, **kw):
        kw.setdefault("storage_root", tmp_path / "store")
        return generate(db_url, org_id, request, now=NOW, **kw)
    return run


def test_same_request_gives_byte_identical_course_apart_from_its_job(gen):
    a, b = gen(req()), gen(req())
    strip = lambda g: {k: v for k, v in g.doc.items() if k != "generation"}  # noqa: E731
    assert strip(a) == strip(b)
    gen_a = a.doc["generation"]
    assert gen_a == {"jobId": str(a.job.id), "attempt": 1, "strategy": "deterministic", "provider": "pack",
                     "packId": "addition.gK-2", "createdAt": "2024-09-01T08:30:00Z"}
    assert a.warnings == [] and a.work.choice.kind == "deterministic" and a.job.status == "done"
    course, issues = parse_course(a.doc)
    assert course is not None and validate_course(course) == []


def test_options_and_numeric_courses_differ_but_each_is_stable(gen):
    opts = gen(req())
    num = gen(req(course_id="add-k2-num", mode="numeric"))
    assert all(i.options is None and i.answer is not None for i in num.course.items)
    assert all(len(i.options) == 4 for i in opts.course.items)


def test_summary_progress_events_and_artifacts(gen, db_url, tmp_path: Path):
    import psycopg

    result = gen(req(subject="water cycle", grade="4"))
    summary = result.job.summary
    assert (summary["strategy"], summary["packId"], summary["calls"], summary["tokensIn"], summary["repairRounds"]) == (
        "deterministic", "water-cycle", 0, 0, 0)
    # the summary is written inside persist, so it times every stage before it
    assert set(summary["stageMs"]) == {"select_strategy", "build_skeleton", "fill", "validate_normalize", "repair"}
    with psycopg.connect(db_url) as conn:
        events = conn.execute("SELECT step, progress FROM job_events WHERE job_id = %s AND status = 'success' "
                              "ORDER BY seq", (result.job.id,)).fetchall()
    assert [s for s, _ in events] == ["select_strategy", "build_skeleton", "fill", "validate_normalize", "repair",
                                      "persist"]
    percents = [p for _, p in events]
    assert percents == sorted(percents) and result.job.progress_percent == 100
    debug = tmp_path / "store/courses/debug/jobs" / str(result.job.id)
    for name in ("strategy.json", "skeleton.json", "draft.json", "summary.json"):
        assert (debug / name).exists(), name
    skeleton = json.loads((debug / "skeleton.json").read_text())
    assert len(skeleton["items"]) == len(result.course.items)
    assert json.loads((debug / "strategy.json").read_text())["pack_id"] == "water-cycle"


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


def _broken_pack_index(tmp_path: Path, where: str) -> PackIndex:
    """A real pack file with one banned word planted in a fact's hint (item-level) or a study text (course-level)."""
    data = json.loads(INDEX.get("water-cycle").model_dump_json())
    if where == "item":
        data["cloze_templates"][0]["hint"] = "Obviously the sun."
    else:
        data["sections"][0]["content"] += " Obviously."
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / "water-cycle.json").write_text(json.dumps(data))
    return PackIndex.from_dir(tmp_path / "packs")


def test_item_errors_without_a_model_fail_validation_and_write_no_course(gen, tmp_path: Path):
    with pytest.raises(GenerationFailed) as exc:
        gen(req(subject="water cycle", grade="4"), packs=_broken_pack_index(tmp_path, "item"))
    err = exc.value
    assert err.reason_code == "validation_failed" and err.retryable is False
    assert {i.code for i in err.issues} == {"banned_term"} and all(i.item_id is not None for i in err.issues)
    assert "banned_term" in err.message and "no text model" in err.message
    assert (err.job_row.status, err.job_row.reason_code) == ("dead_letter", "validation_failed")
    saved = json.loads((tmp_path / f"store/courses/debug/jobs/{err.job_row.id}/validation_issues.json").read_text())
    assert saved["repairRounds"] == 0 and {i["code"] for i in saved["issues"]} == {"banned_term"}
    assert not list((tmp_path / "store").rglob("course.json"))


def test_errors_naming_no_item_fail_before_any_repair(gen, tmp_path: Path):
    with pytest.raises(GenerationFailed) as exc:
        gen(req(subject="water cycle", grade="4"), packs=_broken_pack_index(tmp_path, "section"))
    assert exc.value.reason_code == "validation_failed" and "name no item" in exc.value.message


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
