"""Validation-driven repair through the model: fixable drafts converge, unfixable ones stop at the bound.

Faults are injected per item by the scripted model (wrong option count, an arithmetic answer missing
from the options, a text with no blank, an item left out); the course worker's validate → repair stages
and ``ModelWriter.repair`` must end in a valid course or a coded ``validation_failed`` with no course.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import Group, Level
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton, SkeletonItem
from ignite_dagster.generation.llm import ModelWriter
from ignite_dagster.generation.types import GenerationFailed
from ignite_dagster.storage.local import LocalObjectStore
from tests.integration.test_llm_fill import NOW, PACKS, NoSleep, _sum_in, arithmetic_request, settings_for
from tests.support.generate import generate
from tests.support.openai_server import CHAT, OpenAICompatServer, ScriptedCourseModel


@pytest.fixture
def server():
    with OpenAICompatServer() as srv:
        yield srv


def repair_requests(server: OpenAICompatServer) -> list[list[dict[str, Any]]]:
    """The item blocks each repair request carried."""
    out = []
    for req in server.requests_to(CHAT):
        if req.json["response_format"]["json_schema"]["name"] != "RepairedItems":
            continue
        text = req.text()
        start = text.index("[\n {\n  \"current\"")
        blocks, _ = json.JSONDecoder().raw_decode(text, start)
        out.append(blocks)
    return out


FAULTS = {1: "two_options", 4: "expected_absent", 7: "no_blank", 10: "omit"}


def test_fixable_faults_converge_to_a_valid_course(server, tmp_path: Path, db_url, org_id):
    model = ScriptedCourseModel(faults=FAULTS)
    server.respond_with(CHAT, model)
    store = LocalObjectStore(tmp_path)
    result = generate(db_url, org_id, arithmetic_request(), store=store, packs=PACKS, now=NOW,
                      llm=ModelWriter(settings_for(server), sleep=NoSleep()))

    assert result.telemetry.repair_rounds == 1
    sent = repair_requests(server)
    sent_ids = sorted(b["spec"]["item"] - 1 for blocks in sent for b in blocks)
    # item 4 (answer absent from its options) is corrected from the skeleton without repair; item 10 was
    # left out, so its whole batch (items 6-11) could not be matched by position and is repaired
    assert sent_ids == [1, 6, 7, 8, 9, 10, 11]
    assert all(len(blocks) <= 5 for blocks in sent)
    problems = {b["spec"]["item"] - 1: " ".join(b["problems"]) for blocks in sent for b in blocks}
    assert "invalid_options_count" in problems[1]
    assert "unfilled_text" in problems[10]
    items = {it.id: it for it in result.course.items}
    assert len(items[1].options) == 4
    assert float(items[4].options[items[4].correct_index]) == _sum_in(items[4].text)
    assert items[7].text.count("[blank]") == 1
    # usage of the fill and the repair round add up
    assert result.telemetry.calls == len(server.requests_to(CHAT)) == 5 + len(sent)
    # each round's artifact is saved
    artifact = json.loads((tmp_path / f"courses/debug/jobs/{result.job.id}/repair_1.json").read_text())
    assert sorted(artifact["itemIds"]) == sent_ids


def test_items_are_matched_by_position_not_by_the_ids_a_model_writes(server, tmp_path: Path, db_url, org_id):
    """A model that labels its answers with ids of its own loses nothing: no repair, every item filled."""
    model = ScriptedCourseModel(faults={i: "wrong_id" for i in range(12)})
    server.respond_with(CHAT, model)
    result = generate(db_url, org_id, arithmetic_request(), store=LocalObjectStore(tmp_path), packs=PACKS, now=NOW,
                      llm=ModelWriter(settings_for(server), sleep=NoSleep()))
    assert result.telemetry.repair_rounds == 0 and model.calls["RepairedItems"] == 0
    for item in result.course.items:
        assert f"Item {item.id}:" in item.text  # each item got the answer written for it


def test_unfixable_items_stop_at_the_bound_without_a_course(server, tmp_path: Path, db_url, org_id):
    faults = {2: "two_options", 5: "no_blank"}
    model = ScriptedCourseModel(faults=faults, repair_faults=faults)  # repairs come back just as broken
    server.respond_with(CHAT, model)
    store = LocalObjectStore(tmp_path)
    with pytest.raises(GenerationFailed) as err:
        generate(db_url, org_id, arithmetic_request(), store=store, packs=PACKS, now=NOW,
                 llm=ModelWriter(settings_for(server), sleep=NoSleep()), settings=replace(settings_for(server), repair_rounds=2))
    exc = err.value
    assert exc.reason_code == "validation_failed" and exc.retryable is True  # the model may answer differently next attempt
    assert {i.code for i in exc.issues} == {"invalid_options_count", "invalid_blank_count"}
    assert model.calls["RepairedItems"] == 2  # one request per round, two rounds
    assert (exc.job_row.status, exc.job_row.reason_code) == ("failed", "validation_failed")
    saved = json.loads((tmp_path / f"courses/debug/jobs/{exc.job_row.id}/validation_issues.json").read_text())
    assert saved["repairRounds"] == 2
    # what the failed attempt spent (fill and both rounds) stays on the job's books
    assert exc.job_row.tokens and exc.job_row.tokens > 0 and exc.job_row.cost_usd and exc.job_row.cost_usd > 0
    assert not (tmp_path / "courses/add-fruit/course.json").exists()


def _skeleton(n: int) -> Skeleton:
    return Skeleton(
        course_id="rep", subject="multiplication", grade_band="3-5", mode="options",
        groups=[Group(id=0, name="Times tables")], levels=[Level(id=1, title="All", start=0, end=n - 1)],
        items=[
            SkeletonItem(id=i, groupId=0, clusterId=f"g0-c{i // 3 + 1}", variant=str(i % 3 + 1), mode="options",
                         meta=ArithmeticMeta(op="mul", a=i + 2, b=3, expected=(i + 2) * 3))
            for i in range(n)
        ],
    )


def _broken_course(skeleton: Skeleton) -> dict[str, Any]:
    return {
        "id": skeleton.course_id, "title": "Times", "subject": skeleton.subject, "gradeBand": skeleton.grade_band,
        "groups": [{"id": 0, "name": "Times tables"}], "levels": [{"id": 1, "title": "All", "start": 0, "end": len(skeleton.items) - 1}],
        "items": [
            {"id": sk.id, "groupId": 0, "clusterId": sk.cluster_id, "variant": sk.variant, "mode": "options",
             "text": "broken", "options": ["1", "2"], "correctIndex": 0,
             "stimulus": {"type": "image", "url": "https://example.test/x.png"}}
            for sk in skeleton.items
        ],
    }


def test_repair_sends_only_failing_items_in_small_batches_and_keeps_structure(server):
    skeleton = _skeleton(14)
    course = _broken_course(skeleton)
    failing = [0, 3, 4, 5, 6, 8, 9, 11, 12, 13, 1, 2]
    issues = [Issue(code="invalid_options_count", severity="error", message=f"item {i}: 2 options", item_id=i, field="options")
              for i in failing]
    issues.append(Issue(code="unfilled_content", severity="error", message="study text missing"))  # names no item
    issues.append(Issue(code="missing_section_markers", severity="warning", message="w", item_id=7))
    server.respond_with(CHAT, ScriptedCourseModel())
    filler = ModelWriter(settings_for(server, llm_concurrency=2), sleep=NoSleep())
    request = CourseRequest(course_id="rep", subject="multiplication", grade_band="3-5")
    result = asyncio.run(filler.repair(course, issues, skeleton, request))

    sent = repair_requests(server)
    assert sorted(len(b) for b in sent) == [2, 5, 5]  # 12 failing items, at most 5 per request
    assert sorted(b["spec"]["item"] - 1 for blocks in sent for b in blocks) == sorted(failing)
    assert result.usage.calls == 3 and result.provider == "openai-compatible"
    by_id = {it["id"]: it for it in result.course["items"]}
    assert [it["id"] for it in result.course["items"]] == list(range(14))
    for i in failing:
        it = by_id[i]
        sk = skeleton.item(i)
        assert (it["groupId"], it["clusterId"], it["variant"], it["mode"]) == (0, sk.cluster_id, sk.variant, "options")
        assert len(it["options"]) == 4 and float(it["options"][it["correctIndex"]]) == sk.meta.expected
        assert it["stimulus"]["url"] == "https://example.test/x.png"  # media kept
    for untouched in (7, 10):
        assert by_id[untouched] == course["items"][untouched]
    assert course["items"][0]["text"] == "broken"  # the input is not mutated


def test_repair_without_item_errors_makes_no_call(server):
    skeleton = _skeleton(3)
    filler = ModelWriter(settings_for(server), sleep=NoSleep())
    request = CourseRequest(course_id="rep", subject="multiplication", grade_band="3-5")
    issues = [Issue(code="unfilled_content", severity="error", message="study text missing")]
    result = asyncio.run(filler.repair(_broken_course(skeleton), issues, skeleton, request))
    assert server.requests_to(CHAT) == [] and result.usage.calls == 0
