"""The provider client against a real loopback OpenAI-compatible server, scripted per test.

Covers the retry layer (429 + retry-after, insufficient_quota, 5xx, timeouts, dropped connections),
structured-output failures (malformed, truncated, refused), usage/cost accounting over every attempt,
the answer cache and the concurrency bound.
"""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel

from ignite_dagster.budget.retry_after import parse_retry_after
from ignite_dagster.config import ConfigError, Settings
from ignite_dagster.generation.llm.cache import LLMCache, cache_key
from ignite_dagster.generation.llm.client import ProviderConfig, StructuredClient
from ignite_dagster.generation.llm.pricing import token_cost
from ignite_dagster.generation.llm.wire import response_format, strict_json_schema
from ignite_dagster.generation.types import GenerationFailed
from ignite_dagster.storage.local import LocalObjectStore
from tests.support.openai_server import (
    CHAT,
    OpenAICompatServer,
    Reply,
    api_error,
    chat_json,
    chat_refusal,
    chat_text,
    chat_truncated,
    quota_exceeded,
    rate_limited,
    server_error,
)

PRICES = {"test-model": {"input": Decimal("0.15"), "output": Decimal("0.60")}}
MESSAGES = [{"role": "user", "content": "Give me a word and a number."}]
GOOD = {"word": "seven", "number": 7}


class Answer(BaseModel):
    word: str
    number: int


class SleepRecorder:
    """Backoff sleeps recorded, not slept: tests never wait real seconds."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def server():
    with OpenAICompatServer() as srv:
        yield srv


def config(server: OpenAICompatServer, **kw) -> ProviderConfig:
    values = {
        "api_key": "test-key", "model": "test-model", "base_url": server.base_url,
        "timeout_seconds": 5.0, "max_retries": 3, "max_output_tokens": 1000, "concurrency": 4, "prices": PRICES,
    }
    values.update(kw)
    return ProviderConfig(**values)


def call(cfg: ProviderConfig, *, sleep: SleepRecorder | None = None, cache: LLMCache | None = None,
         schema: type[BaseModel] = Answer, prompt_version: str = "v1", messages=MESSAGES):
    """One parse in a fresh event loop; returns (result or exception, meter)."""
    async def run():
        async with StructuredClient(cfg, cache=cache, sleep=sleep or SleepRecorder()) as client:
            meter = client.new_meter()
            try:
                return await client.parse(messages, schema, meter=meter, prompt_version=prompt_version), meter
            except GenerationFailed as exc:
                return exc, meter
    return asyncio.run(run())


def test_normal_answer_parsed_with_usage_and_cost(server):
    server.enqueue(CHAT, chat_json(GOOD, prompt_tokens=1000, completion_tokens=500))
    result, meter = call(config(server))
    assert result == Answer(**GOOD)
    assert (meter.calls, meter.tokens_in, meter.tokens_out, meter.failed_attempts) == (1, 1000, 500, 0)
    assert meter.cost_usd == Decimal("0.00045")  # 1000 * 0.15/1M + 500 * 0.60/1M
    sent = server.requests_to(CHAT)[0]
    assert sent.headers["authorization"] == "Bearer test-key"
    assert sent.json["model"] == "test-model"
    assert sent.max_tokens == 1000
    assert sent.json["response_format"]["type"] == "json_schema"
    assert sent.json["response_format"]["json_schema"]["strict"] is True


def test_429_honours_retry_after_then_succeeds(server):
    server.enqueue(CHAT, rate_limited(retry_after=2), rate_limited(retry_after_ms=1500), chat_json(GOOD))
    sleep = SleepRecorder()
    result, meter = call(config(server), sleep=sleep)
    assert result == Answer(**GOOD)
    assert sleep.delays == [2.0, 1.5]
    assert meter.calls == 3 and meter.failed_attempts == 2
    assert len(server.requests_to(CHAT)) == 3


def test_insufficient_quota_fails_fast(server):
    server.enqueue(CHAT, quota_exceeded(), chat_json(GOOD))
    exc, meter = call(config(server))
    assert isinstance(exc, GenerationFailed)
    assert exc.reason_code == "provider_quota" and exc.retryable is False
    assert len(server.requests_to(CHAT)) == 1 and meter.calls == 1


def test_account_wide_failure_stops_waiting_calls(server):
    """After insufficient_quota no other call of the client is sent: one request, not one per call."""
    server.enqueue(CHAT, quota_exceeded())
    server.respond_with(CHAT, chat_json(GOOD))

    async def run():
        async with StructuredClient(config(server, concurrency=1)) as client:
            meter = client.new_meter()
            results = await asyncio.gather(*[
                client.parse([{"role": "user", "content": f"q{i}"}], Answer, meter=meter, prompt_version="v1")
                for i in range(4)
            ], return_exceptions=True)
            return results, meter

    results, meter = asyncio.run(run())
    assert [r.reason_code for r in results] == ["provider_quota"] * 4
    assert len(server.requests_to(CHAT)) == 1 and meter.calls == 1


def test_rate_limit_exhausts_retries(server):
    server.respond_with(CHAT, rate_limited(retry_after=0.5))
    sleep = SleepRecorder()
    exc, meter = call(config(server, max_retries=2), sleep=sleep)
    assert exc.reason_code == "provider_rate_limited" and exc.retryable is True
    assert len(server.requests_to(CHAT)) == 3 and sleep.delays == [0.5, 0.5]


def test_retry_after_beyond_bound_is_not_sat_out(server):
    server.enqueue(CHAT, rate_limited(retry_after=3600))
    sleep = SleepRecorder()
    exc, _ = call(config(server), sleep=sleep)
    assert exc.reason_code == "provider_rate_limited" and exc.retryable is True
    assert len(server.requests_to(CHAT)) == 1 and sleep.delays == []


def test_500_then_success_with_exponential_backoff(server):
    server.enqueue(CHAT, server_error(500), server_error(503), chat_json(GOOD))
    sleep = SleepRecorder()
    result, meter = call(config(server, backoff_base_seconds=0.5), sleep=sleep)
    assert result == Answer(**GOOD)
    assert len(sleep.delays) == 2
    assert 0.375 <= sleep.delays[0] <= 0.5 and 0.75 <= sleep.delays[1] <= 1.0  # base·2^n, jitter ≤ 25 %
    assert meter.calls == 3


def test_persistent_5xx_is_provider_unavailable(server):
    server.respond_with(CHAT, server_error(502))
    exc, meter = call(config(server, max_retries=3))
    assert exc.reason_code == "provider_unavailable" and exc.retryable is True
    assert len(server.requests_to(CHAT)) == 4 and meter.calls == 4


def test_timeout_and_dropped_connection_are_retried(server):
    server.enqueue(CHAT, chat_json(GOOD, delay=2.0), Reply(drop=True), chat_json(GOOD))
    result, meter = call(config(server, timeout_seconds=0.5))
    assert result == Answer(**GOOD)
    assert meter.calls == 3 and meter.failed_attempts == 2


@pytest.mark.parametrize("stream", [True, False])
def test_a_server_that_hangs_up_is_a_connection_failure_not_a_slow_model(server, stream):
    # the aiohttp transport reports a dropped connection as a connect timeout; transport.send says what it was
    server.respond_with(CHAT, Reply(drop=True))
    exc, meter = call(config(server, max_retries=2, stream=stream))
    assert exc.reason_code == "provider_unavailable" and exc.retryable is True, exc.message
    assert "timeout" not in exc.message.lower() and meter.failed_attempts == 3


def test_client_error_is_not_retried(server):
    server.enqueue(CHAT, api_error(400, "model 'nope' does not exist", code="model_not_found", type_="invalid_request_error"))
    exc, _ = call(config(server))
    assert exc.reason_code == "provider_error" and exc.retryable is False
    assert "model 'nope'" in exc.message
    assert len(server.requests_to(CHAT)) == 1


def test_malformed_json_retried_then_success(server):
    server.enqueue(CHAT, chat_text('{"word": "seven", "number": '), chat_json({"word": "seven"}), chat_json(GOOD))
    result, meter = call(config(server))
    assert result == Answer(**GOOD)
    assert meter.calls == 3 and meter.failed_attempts == 2
    assert meter.tokens_in == 300  # the failed attempts were billed and counted


def test_non_json_body_is_malformed_and_unpriced(server):
    server.enqueue(CHAT, Reply(raw=b"<html>bad gateway page</html>"), chat_json(GOOD))
    result, meter = call(config(server))
    assert result == Answer(**GOOD)
    assert meter.calls == 2 and meter.failed_attempts == 1
    assert meter.cost_usd is None  # an answer without usage cannot be priced


def test_malformed_json_bounded_then_provider_error(server):
    server.respond_with(CHAT, chat_text("this is not json"))
    exc, meter = call(config(server, malformed_retries=2))
    assert exc.reason_code == "provider_error" and exc.retryable is False
    assert len(server.requests_to(CHAT)) == 3 and meter.tokens_out == 150


def test_truncated_output_retried_with_doubled_budget(server):
    server.enqueue(CHAT, chat_truncated(completion_tokens=1000), chat_json(GOOD, completion_tokens=40))
    result, meter = call(config(server, max_output_tokens=1000))
    assert result == Answer(**GOOD)
    budgets = [r.max_tokens for r in server.requests_to(CHAT)]
    assert budgets == [1000, 2000]
    assert meter.tokens_out == 1040 and meter.calls == 2  # the truncated attempt's tokens count
    assert meter.cost_usd == (Decimal(200) * Decimal("0.15") + Decimal(1040) * Decimal("0.60")) / Decimal(1_000_000)


def test_truncated_twice_is_output_truncated(server):
    server.respond_with(CHAT, chat_truncated())
    exc, meter = call(config(server))
    assert exc.reason_code == "output_truncated"
    assert len(server.requests_to(CHAT)) == 2 and meter.tokens_out == 8000


def test_refusal_is_content_refused(server):
    server.enqueue(CHAT, chat_refusal("I can't write that."), chat_json(GOOD))
    exc, meter = call(config(server))
    assert exc.reason_code == "content_refused" and exc.retryable is False
    assert "can't write that" in exc.message
    assert len(server.requests_to(CHAT)) == 1 and meter.tokens_in == 100


def test_content_filter_is_content_refused(server):
    server.enqueue(CHAT, chat_text("", finish_reason="content_filter"))
    exc, _ = call(config(server))
    assert exc.reason_code == "content_refused"


def test_cost_unknown_without_a_price(server):
    server.respond_with(CHAT, chat_json(GOOD))
    _, meter = call(config(server, prices={"other-model": {"input": Decimal(1), "output": Decimal(1)}}))
    assert meter.cost_usd is None and meter.unpriced_models == {"test-model"}
    _, meter = call(config(server, prices={}))
    assert meter.cost_usd is None
    assert meter.tokens_in == 100  # tokens are still counted


def test_cost_unknown_when_response_has_no_usage(server):
    body = chat_json(GOOD).body
    del body["usage"]
    server.enqueue(CHAT, Reply(body=body))
    result, meter = call(config(server))
    assert result == Answer(**GOOD) and meter.cost_usd is None


def test_pricing_cached_input_and_served_model_names():
    prices = {"m": {"input": Decimal("2"), "output": Decimal("8"), "cached_input": Decimal("0.5")}}
    assert token_cost(prices, "m", 1_000_000, 0, cached_in=400_000) == Decimal("1.4")
    assert token_cost(prices, "unknown", 10, 10, served_model="m") == Decimal("0.0001")
    assert token_cost({}, "m", 10, 10) is None


def test_retry_after_header_forms():
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_cache_hit_costs_no_provider_call(server, tmp_path: Path):
    cache = LLMCache(LocalObjectStore(tmp_path))
    server.respond_with(CHAT, chat_json(GOOD))
    first, meter1 = call(config(server), cache=cache)
    assert meter1.calls == 1 and meter1.cache_hits == 0
    second, meter2 = call(config(server), cache=cache)
    assert second == first
    assert meter2.calls == 0 and meter2.cache_hits == 1 and meter2.tokens_in == 0
    assert len(server.requests_to(CHAT)) == 1
    key = cache_key("test-model", "v1", response_format("Answer", strict_json_schema(Answer)), MESSAGES)
    assert (tmp_path / cache.path(key)).is_file()
    assert cache.path(key).startswith(f"courses/debug/llm-cache/{key[:2]}/")

    # a new prompt version, another schema or other messages are other addresses
    class Other(BaseModel):
        word: str

    call(config(server), cache=cache, prompt_version="v2")
    call(config(server), cache=cache, schema=Other)
    call(config(server), cache=cache, messages=[{"role": "user", "content": "something else"}])
    assert len(server.requests_to(CHAT)) == 4


def test_damaged_cache_entry_is_a_miss(server, tmp_path: Path):
    store = LocalObjectStore(tmp_path)
    cache = LLMCache(store)
    key = cache_key("test-model", "v1", response_format("Answer", strict_json_schema(Answer)), MESSAGES)
    store.put(cache.path(key), b"{not json")
    server.respond_with(CHAT, chat_json(GOOD))
    result, meter = call(config(server), cache=cache)
    assert result == Answer(**GOOD) and meter.calls == 1
    _, meter = call(config(server), cache=cache)
    assert meter.calls == 0 and meter.cache_hits == 1  # rewritten by the successful call


def test_concurrency_limit_respected(server):
    server.respond_with(CHAT, chat_json(GOOD, delay=0.1))

    async def run():
        async with StructuredClient(config(server, concurrency=3)) as client:
            meter = client.new_meter()
            await asyncio.gather(*[
                client.parse([{"role": "user", "content": f"q{i}"}], Answer, meter=meter, prompt_version="v1")
                for i in range(10)
            ])
            return meter

    meter = asyncio.run(run())
    assert meter.calls == 10
    assert server.max_in_flight == 3


def test_missing_model_configuration_names_every_variable():
    with pytest.raises(ConfigError) as err:
        ProviderConfig.from_settings(Settings())
    assert err.value.missing == ["OPENAI_API_KEY", "IGNITE_TEXT_MODEL"]
    cfg = ProviderConfig.from_settings(Settings(openai_api_key="k", text_model="m", llm_prices='{"m": {"input": 1, "output": 2}}'))
    assert cfg.prices == {"m": {"input": Decimal(1), "output": Decimal(2)}}


def test_server_images_route_serves_decodable_png(server):
    """The loopback server also speaks images.generate (reused by the media tests)."""
    async def run():
        client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0)
        try:
            return await client.images.generate(model="img-model", prompt="a red square", n=2)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert len(result.data) == 2
    png = base64.b64decode(result.data[0].b64_json)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in png
    assert server.requests_to("/v1/images/generations")[0].json["prompt"] == "a red square"


def test_strict_schema_is_what_the_sdk_parse_helper_would_send(server):
    """Our response_format is the wire format of chat.completions.parse (cross-checked with the SDK)."""
    from openai.lib._pydantic import to_strict_json_schema

    from ignite_dagster.generation.llm.wire import response_format, strict_json_schema

    assert strict_json_schema(Answer) == to_strict_json_schema(Answer)
    server.enqueue(CHAT, chat_json(GOOD))
    call(config(server))
    expected = response_format("Answer", strict_json_schema(Answer))
    assert server.requests_to(CHAT)[0].json["response_format"] == expected
    assert expected["json_schema"]["schema"]["additionalProperties"] is False


# --- timeouts that fit the server (issue: the model path against a real model server) -----------------


def test_a_server_slower_than_the_timeout_is_provider_timeout_after_one_retry(server):
    """Not provider_unavailable after four attempts: a timeout has its own code and is retried once."""
    server.enqueue(CHAT, chat_json(GOOD, delay=1.5), chat_json(GOOD, delay=1.5), chat_json(GOOD))
    result, meter = call(config(server, timeout_seconds=0.4))
    assert isinstance(result, GenerationFailed)
    assert result.reason_code == "provider_timeout" and result.retryable is True
    assert "IGNITE_LLM_TIMEOUT_SECONDS" in result.message
    assert meter.calls == 2 == len(server.requests_to(CHAT))


def test_a_streamed_answer_slower_than_the_timeout_but_never_silent_that_long_succeeds(server):
    """The timeout bounds silence between chunks, not the whole answer: a slow model that keeps writing
    is never cut off (the answer below takes ~1.5 s against a 0.5 s timeout)."""
    reply = chat_json(GOOD)
    reply.chunk_delay = 0.3
    server.enqueue(CHAT, reply)
    result, meter = call(config(server, timeout_seconds=0.5))
    assert result == Answer(**GOOD) and meter.calls == 1 and meter.failed_attempts == 0
    assert server.requests_to(CHAT)[0].json["stream"] is True


def test_without_streaming_the_timeout_bounds_the_whole_answer(server):
    reply = chat_json(GOOD, delay=1.0)
    server.enqueue(CHAT, reply, reply)
    result, _ = call(config(server, timeout_seconds=0.4, stream=False))
    assert isinstance(result, GenerationFailed) and result.reason_code == "provider_timeout"
    assert "stream" not in server.requests_to(CHAT)[0].json


def test_the_fill_deadline_stops_a_call_whatever_its_retries(server):
    server.respond_with(CHAT, rate_limited(retry_after=0.2))

    async def run():
        async with StructuredClient(config(server, fill_deadline_seconds=0.6, max_retries=50)) as client:
            meter = client.new_meter()
            try:
                await client.parse(MESSAGES, Answer, meter=meter, prompt_version="v1", deadline=client.new_deadline())
            except GenerationFailed as exc:
                return exc
        return None

    exc = asyncio.run(run())
    assert exc is not None and exc.reason_code == "provider_timeout" and "deadline" in exc.message
    assert len(server.requests_to(CHAT)) <= 4  # 0.2 s apart within 0.6 s


def test_concurrency_is_capped_by_the_slots_the_server_reports(server):
    """llama.cpp's /props reports total_slots; more in flight would only queue inside the server, where
    the wait would count against our timeout."""
    from ignite_dagster.generation.llm import slots

    slots._SLOTS.pop(server.base_url, None)
    server.respond_with("/props", Reply(body={"total_slots": 2}))
    server.respond_with(CHAT, chat_json(GOOD, delay=0.1))

    async def run():
        async with StructuredClient(config(server, concurrency=8)) as client:
            meter = client.new_meter()
            await asyncio.gather(*[
                client.parse([{"role": "user", "content": f"q{i}"}], Answer, meter=meter, prompt_version="v1")
                for i in range(8)
            ])
            return client.concurrency

    assert asyncio.run(run()) == 2
    assert server.max_in_flight == 2
    slots._SLOTS.pop(server.base_url, None)
