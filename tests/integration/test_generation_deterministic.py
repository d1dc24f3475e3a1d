"""The pipeline with deterministic packs, through the production course worker (real Postgres, real
storage): byte-identical courses, progress, artifacts, and the repair loop's refusals of a whole job
(the strategy rules and the stages on their own are unit tests: tests/unit/test_generation_deterministic.py;
the LLM tests cover convergence against a loopback server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ignite_dagster.course.model import parse_course
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.validation import validate_course
from ignite_dagster.generation.packs import PackIndex, default_index
from ignite_dagster.generation.types import GenerationFailed
from tests.support.generate import generate

NOW = datetime(2024, 9, 1, 8, 30, tzinfo=UTC)
INDEX = default_index()


def req(**kw) -> CourseRequest:
    data = {"course_id": "add-k2", "subject": "Addition", "grade": "1"}
    data.update(kw)
    return CourseRequest.model_validate(data)


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
