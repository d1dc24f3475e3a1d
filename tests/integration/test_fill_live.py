"""The model path as it runs: deadlines that fit streaming, output budgets that fit the schema and the
slot, progress that moves during the fill, timings that measure the generation, and quality failures
that end ``quality_failed`` (retried once, without the cache). Against the scripted loopback server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from ignite_dagster.course.request import CourseRequest
from ignite_dagster.generation.llm import ModelWriter, ProviderConfig, StructuredClient
from ignite_dagster.generation.llm import slots as slots_module
from ignite_dagster.generation.llm.schemas import item_batch_schema, overview_schema, schema_max_tokens
from ignite_dagster.generation.llm.slots import SLOT_MARGIN_TOKENS, output_budget
from ignite_dagster.generation.types import GenerationFailed
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage.local import LocalObjectStore
from tests.integration.test_llm_fill import NoSleep, settings_for
from tests.support.generate import generate
from tests.support.openai_server import (
    CHAT,
    OpenAICompatServer,
    RecordedRequest,
    Reply,
    ScriptedCourseModel,
    chat_json,
)


class Answer(BaseModel):
    word: str


@pytest.fixture
def server():
    with OpenAICompatServer() as srv:
        yield srv


def config(server: OpenAICompatServer, **kw: Any) -> ProviderConfig:
    values: dict[str, Any] = {"api_key": "k", "model": "test-model", "base_url": server.base_url,
                              "timeout_seconds": 5.0, "max_output_tokens": 1000, "discover_slots": False}
    values.update(kw)
    return ProviderConfig(**values)


def one_call(cfg: ProviderConfig) -> tuple[Any, float]:
    async def run():
        async with StructuredClient(cfg, sleep=NoSleep()) as client:
            meter = client.new_meter()
            try:
                return await client.parse([{"role": "user", "content": "q"}], Answer, meter=meter,
                                          prompt_version="v1", deadline=client.new_deadline())
            except GenerationFailed as exc:
                return exc
    t0 = time.monotonic()
    result = asyncio.run(run())
    return result, time.monotonic() - t0


def slow_stream(chunk_delay: float) -> Reply:
    reply = chat_json({"word": "magma rises through the crust of the volcano"})
    reply.chunk_delay = chunk_delay
    return reply


def test_a_slow_but_steady_stream_outlives_the_fill_deadline(server):
    """Five chunks 0.3 s apart: 1.5 s of answer against a 0.5 s deadline. Tokens keep arriving, so the
    deadline moves with them; the silence between chunks (0.3 s) stays under the 1 s timeout."""
    server.respond_with(CHAT, slow_stream(0.3))
    result, took = one_call(config(server, fill_deadline_seconds=0.5, timeout_seconds=1.0))
    assert isinstance(result, Answer), result
    assert took > 1.0 and len(server.requests_to(CHAT)) == 1


def test_a_stalled_stream_still_fails_fast_as_provider_timeout(server):
    """The first chunk comes and then nothing for 30 s: the silence timeout (0.3 s, one retry) ends it in
    well under a second or two, however generous the fill deadline."""
    server.respond_with(CHAT, slow_stream(30.0))
    result, took = one_call(config(server, fill_deadline_seconds=600, timeout_seconds=0.3))
    assert isinstance(result, GenerationFailed) and result.reason_code == "provider_timeout", result
    assert took < 5.0 and len(server.requests_to(CHAT)) == 2  # one retry of a timed-out call


def test_a_stall_past_the_fill_deadline_is_provider_timeout_even_with_a_long_silence_timeout(server):
    server.respond_with(CHAT, slow_stream(30.0))
    result, took = one_call(config(server, fill_deadline_seconds=0.5, timeout_seconds=0.4))
    assert isinstance(result, GenerationFailed) and result.reason_code == "provider_timeout"
    assert took < 5.0


def test_the_fill_deadline_counts_from_the_first_call_not_from_when_the_fill_was_queued(server):
    """A deadline made long before its first call (the fill waited behind other courses) has not started."""
    server.respond_with(CHAT, chat_json({"word": "lava"}))

    async def run():
        async with StructuredClient(config(server, fill_deadline_seconds=0.3)) as client:
            deadline = client.new_deadline()
            await asyncio.sleep(0.5)  # queued: longer than the whole deadline
            return await client.parse([{"role": "user", "content": "q"}], Answer, meter=client.new_meter(),
                                      prompt_version="v1", deadline=deadline)
    assert asyncio.run(run()) == Answer(word="lava")


def test_output_budgets_fit_the_schema_and_the_servers_slot(server):
    """llama.cpp's /props reports each slot's context; a call asks for at most what the slot leaves after
    its prompt, and never more than its schema can hold (at one token per character)."""
    slots_module._SLOTS.pop(server.base_url, None)
    server.respond_with("/props", Reply(body={"total_slots": 4, "default_generation_settings": {"n_ctx": 1500}}))
    model = ScriptedCourseModel()
    server.respond_with(CHAT, model)
    filler = ModelWriter(settings_for(server, llm_max_output_tokens=4000), sleep=NoSleep())
    try:
        from ignite_dagster.generation.stages.build_skeleton import build_skeleton
        from ignite_dagster.generation.types import StrategyChoice

        request = CourseRequest(course_id="budget", subject="volcanoes", grade_band="3-5", items_per_group=4,
                                groups_count=2)
        skeleton = build_skeleton(request, StrategyChoice(kind="llm", reason="t"), None)
        asyncio.run(filler.fill(skeleton, request))
    finally:
        slots_module._SLOTS.pop(server.base_url, None)
    for r in server.requests_to(CHAT):
        prompt = len(json.dumps(r.json["messages"], ensure_ascii=False)) // 3
        schema = r.json["response_format"]["json_schema"]["schema"]
        assert r.max_tokens <= 1500 - prompt - SLOT_MARGIN_TOKENS
        assert r.max_tokens <= schema_max_tokens(schema)
    # without a slot the setting and the schema decide: a title and description need a few hundred
    # tokens at most (one per character), a batch of items more than the setting
    small = overview_schema()
    assert output_budget(4000, small, [], None) == (schema_max_tokens(small), None) and schema_max_tokens(small) < 600
    assert output_budget(4000, item_batch_schema("options", 4), [], None) == (4000, None)


def progress_recorder(db_url: str, seen: list[tuple[int, str]]):
    """A scripted model that, on every request, reads the job's progress row first: what job-status and
    the CLI's watch show at that moment."""
    model = ScriptedCourseModel()

    def respond(request: RecordedRequest) -> Reply:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT progress_percent, progress_message FROM ai_course_jobs "
                               "WHERE status = 'processing'").fetchone()
        if row is not None:
            seen.append((row[0], row[1] or ""))
        return model(request)
    return respond


def test_progress_moves_with_finished_calls_and_the_fill_time_is_the_generations_own(db_url, org_id, tmp_path):
    seen: list[tuple[int, str]] = []
    with OpenAICompatServer(latency=0.1) as server:
        server.respond_with(CHAT, progress_recorder(db_url, seen))
        filler = ModelWriter(settings_for(server, llm_concurrency=1), sleep=NoSleep())
        result = generate(db_url, org_id, {"course_id": "live", "subject": "volcanoes", "grade_band": "3-5",
                                           "items_per_group": 2, "groups_count": 3},
                          store=LocalObjectStore(tmp_path), llm=filler)
        calls = len(server.requests_to(CHAT))
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[0] == 20 and 20 < percents[-1] < 70
    assert len(set(percents)) >= 3, seen  # it moved while the calls ran, not only at the end
    assert any("items" in m and "study texts" in m for _, m in seen), seen
    # first call → last answer: at least every call's 100 ms, one after another (concurrency 1)
    job = result.job
    assert job.latency_ms >= 0.9 * 100 * calls and job.summary["stageMs"]["fill"] == job.latency_ms
    assert job.generation_duration_ms >= job.latency_ms
    assert any(e.step == "fill" and e.status == "success" for e in JobQueue(db_url).events(job.id))


def test_a_course_failing_the_gates_after_repair_ends_quality_failed_retried_once_without_the_cache(
        db_url, org_id, tmp_path):
    store = LocalObjectStore(tmp_path)
    request = {"course_id": "off", "subject": "volcanoes", "grade_band": "3-5", "items_per_group": 2,
               "groups_count": 2}
    with OpenAICompatServer() as server:
        model = ScriptedCourseModel(faults={1: "off_subject", 2: "same_options"}, repair_faults={1: "off_subject"})
        server.respond_with(CHAT, model)
        filler = ModelWriter(settings_for(server, repair_rounds=2), store, sleep=NoSleep())
        with pytest.raises(GenerationFailed) as failed:
            generate(db_url, org_id, request, store=store, llm=filler)
        job = failed.value.job_row  # type: ignore[attr-defined]
        assert (job.status, job.reason_code) == ("failed", "quality_failed")
        assert "quality gates failed: off_subject" in job.error and "2 repair round(s)" in job.error
        issues = json.loads(store.get(f"courses/debug/jobs/{job.id}/validation_issues.json").data)
        assert issues["reasonCode"] == "quality_failed"
        assert not (tmp_path / "courses/off/course.json").exists()

        # the one retry: claimed again, it asks the model afresh (the cached answers are the ones that
        # failed) and, failing the same way, is not retried again
        queue = JobQueue(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE ai_course_jobs SET next_attempt_at = now() WHERE id = %s", (job.id,))
        calls_before = len(server.requests_to(CHAT))
        [again] = queue.claim_course_jobs("test-worker", limit=1)
        assert again.id == job.id and again.reason_code == "quality_failed"
        from ignite_dagster.course_jobs.worker import CourseWorker
        from ignite_dagster.queue.lease import Lease
        from ignite_dagster.queue.staged import JobAborted

        worker = CourseWorker(filler.settings, queue, store, Lease(queue, 5.0), llm=filler)
        with pytest.raises(JobAborted) as aborted:
            worker.process(again)
        assert aborted.value.reason_code == "quality_failed" and aborted.value.retryable is False
        fill_calls = len(server.requests_to(CHAT)) - calls_before
        assert fill_calls > 2  # plan, study texts and item batches asked again, not served from the cache
        assert queue.get(job.id).status == "dead_letter"


def test_items_failing_a_gate_are_repaired_and_the_course_ships(db_url, org_id, tmp_path):
    with OpenAICompatServer() as server:
        server.respond_with(CHAT, ScriptedCourseModel(faults={0: "same_options", 3: "off_subject"}))
        filler = ModelWriter(settings_for(server), sleep=NoSleep())
        result = generate(db_url, org_id, {"course_id": "fixed", "subject": "volcanoes", "grade_band": "3-5",
                                           "items_per_group": 2, "groups_count": 2},
                          store=LocalObjectStore(tmp_path), llm=filler)
    assert result.job.status == "done" and result.repair_rounds == 1
    assert len(set(result.doc["items"][0]["options"])) == 4 and "volcanoes" in result.doc["items"][3]["text"]
