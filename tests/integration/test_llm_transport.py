"""One HTTP attempt as ``transport.send`` reads it, against the loopback server: the request body it
builds, a stream read event by event (data split over lines, comments, usage, refusal), and a failure
sent as an event after the 200 (retried, its usage unknown)."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from ignite_dagster.generation.llm.transport import request_body, send, sse_data, tls_context
from tests.integration.test_llm_provider import GOOD, Answer, call, config
from tests.support.openai_server import CHAT, OpenAICompatServer, Reply, chat_json

FMT = {"type": "json_schema", "json_schema": {"name": "Answer", "strict": True, "schema": {"type": "object"}}}
MESSAGES = [{"role": "user", "content": "Give me a word and a number."}]


@pytest.fixture
def server():
    with OpenAICompatServer() as srv:
        yield srv


def sse(*events: str) -> Reply:
    """A 200 whose body is the given server-sent events, as written (the script's own framing)."""
    return Reply(raw="".join(events).encode(), headers={"content-type": "text/event-stream"})


def one_send(server: OpenAICompatServer, *, stream: bool):
    async def run():
        client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0,
                                    http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()))
        async with client:
            return await send(client, "test-model", MESSAGES, FMT, 321, stream=stream)
    return asyncio.run(run())


@pytest.mark.parametrize("stream", [True, False])
def test_the_request_is_the_chat_completions_body_we_build(server, stream):
    server.enqueue(CHAT, chat_json(GOOD))
    answer = one_send(server, stream=stream)
    assert json.loads(answer.content) == GOOD and answer.finish == "stop" and answer.usage["prompt_tokens"] > 0
    sent = server.requests_to(CHAT)[0]
    assert sent.json == request_body("test-model", MESSAGES, FMT, 321, stream=stream)
    assert sent.headers["authorization"] == "Bearer k"
    assert sent.headers["content-type"] == "application/json"  # the body goes as bytes we encoded: still JSON
    assert sent.json.get("stream_options") == ({"include_usage": True} if stream else None)


def test_calls_one_after_another_reuse_one_connection(server):
    """A streamed answer is read to the end of its body (past ``[DONE]``), so the HTTP/1.1 connection goes
    back to the pool: three calls, one connection (closed early, each call would open its own)."""
    server.respond_with(CHAT, chat_json(GOOD))

    async def run():
        client = openai.AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0,
                                    http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()))
        async with client:
            for _ in range(3):
                await send(client, "test-model", MESSAGES, FMT, 321, stream=True)
    asyncio.run(run())
    assert len({r.peer for r in server.requests_to(CHAT)}) == 1


def test_a_stream_is_read_by_events_not_lines(server):
    """Data split over two ``data`` lines joins with a newline (valid JSON either way), a comment line
    and an ``event``/``id`` field change nothing, and the usage chunk after the finish is kept."""
    head = {"model": "served-model", "object": "chat.completion.chunk"}
    server.enqueue(CHAT, sse(
        ": keep-alive\n\n",
        "event: message\nid: 1\ndata: " + json.dumps({**head, "choices": [{"index": 0, "delta": {"content": '{"word": '}}]}) + "\n\n",
        "data: {\"model\": \"served-model\",\n"
        "data: \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"\\\"seven\\\", \\\"number\\\": 7}\"}}]}\n\n",
        "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + "\n\n",
        "data: " + json.dumps({**head, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5}}) + "\n\n",
        "data: [DONE]\n\n",
    ))
    answer = one_send(server, stream=True)
    assert json.loads(answer.content) == GOOD
    assert (answer.finish, answer.model, answer.refusal) == ("stop", "served-model", None)
    assert dict(answer.usage) == {"prompt_tokens": 11, "completion_tokens": 5}


def test_a_streamed_refusal_is_read(server):
    server.enqueue(CHAT, sse(
        "data: " + json.dumps({"choices": [{"index": 0, "delta": {"refusal": "I can't "}}]}) + "\n\n",
        "data: " + json.dumps({"choices": [{"index": 0, "delta": {"refusal": "help."}, "finish_reason": "stop"}]}) + "\n\n",
        "data: [DONE]\n\n",
    ))
    answer = one_send(server, stream=True)
    assert answer.refusal == "I can't help." and answer.content == ""


def test_an_error_event_after_the_200_is_retried_and_its_usage_is_unknown(server):
    """The server starts answering, then sends ``{"error": …}`` (OpenAI does so when it gives up mid-
    answer): the attempt is a transient failure, retried, and the job's cost cannot be known."""
    server.enqueue(CHAT, sse("data: " + json.dumps({"error": {"message": "The server had an error", "type": "server_error"}}) + "\n\n"),
                   chat_json(GOOD))
    result, meter = call(config(server, stream=True))
    assert result == Answer(**GOOD)
    assert (meter.calls, meter.failed_attempts) == (2, 1)
    assert meter.cost_usd is None  # the failed attempt may have been billed: unknown, never 0


def test_an_error_event_every_time_ends_provider_unavailable_naming_it(server):
    server.respond_with(CHAT, sse("data: " + json.dumps({"error": {"message": "overloaded"}}) + "\n\n"))
    result, meter = call(config(server, stream=True, max_retries=1, backoff_base_seconds=0.0))
    assert result.reason_code == "provider_unavailable" and "error event in the stream: overloaded" in result.message
    assert meter.calls == 2


def test_an_event_that_is_not_json_makes_the_answer_malformed_retried_and_unpriced(server):
    """A stream whose event cannot be parsed is not trusted whatever the other events said: the attempt is
    a malformed answer (retried within the malformed budget), its cost unknown."""
    good = "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": json.dumps(GOOD)}}]}) + "\n\n"
    server.enqueue(CHAT, sse(good, "data: {not json\n\n", "data: [DONE]\n\n"), chat_json(GOOD))
    result, meter = call(config(server, stream=True))
    assert result == Answer(**GOOD)
    assert (meter.calls, meter.failed_attempts) == (2, 1) and meter.cost_usd is None
    server.respond_with(CHAT, sse("data: {not json\n\n", "data: [DONE]\n\n"))
    result, _ = call(config(server, stream=True, malformed_retries=0))
    assert result.reason_code == "provider_error" and "an event of its stream) is not JSON" in result.message


def test_sse_data_follows_the_event_stream_format():
    async def lines(*items: str):
        for item in items:
            yield item

    async def collect(*items: str) -> list[str]:
        return [d async for d in sse_data(lines(*items))]

    assert asyncio.run(collect("data: a", "", "data:b", "data:  c", "", ": note", "", "retry: 10", "data: [DONE]")) \
        == ["a", "b\n c", "[DONE]"]
