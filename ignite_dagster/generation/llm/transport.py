"""One HTTP attempt of a structured call, streamed or not, read into an ``Answer``; the process's shared
TLS context. No retries here: ``client`` decides (``queue/retry.py``).

Why the request goes through the SDK's ``post`` and the answer is read here (issue 23): the body is
plain JSON we build ourselves (``wire``), so ``chat.completions.create``'s typed-parameter transform
(a recursive walk of the messages and the whole response schema) changes nothing, and its streamed
answer is one pydantic ``ChatCompletionChunk`` per server-sent event. Those two cost ~4 ms of CPU per
call (measured 6.5 vs 2.5 ms per call against the scripted server), which in a run of ten model
courses is seventy calls on one interpreter. ``post`` still gives the SDK's URL, headers and
authentication, its timeout and connection errors, and its ``APIStatusError`` for a non-2xx answer
(read first, so the error carries the body); what it does not parse, this module does: the chunks'
content, refusal, finish reason, usage and model, and a streamed ``{"error": …}`` event, raised as the
SDK's ``APIError`` as its own stream would.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx2
import openai

from ignite_dagster.generation.llm.deadline import Deadline
from ignite_dagster.storage.json_codec import dump_compact, load

PATH = "/chat/completions"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The SDK's default TLS context, built once per process.

    Building it loads the CA bundle (~40 ms); a client is opened per fill and repair round (clients
    are bound to one event loop), so without sharing, every fill paid that before its first request.
    An SSLContext is safe to share between clients, threads and event loops.
    """
    return httpx2.create_ssl_context()


def http_client() -> httpx2.AsyncClient:
    """The SDK's async HTTP client with aiohttp as its transport (``openai.DefaultAioHttpClient``, the
    ``openai[aiohttp]`` extra), on the shared TLS context.

    Why aiohttp (issue 23): the courses of a run make their calls on one event loop, and per call the
    default stack (httpx2 over httpcore2 over anyio: a connection pool that polls every idle socket per
    request, a task group per connect) cost more CPU there than the rest of the call. Ten fills of 7
    calls each against the scripted server: 294 ms of CPU with the default transport, 179 ms with this
    one (``bench/run_fill_bench.py`` shows the run). The SDK maps aiohttp's errors to httpx2's (a
    timeout stays a timeout, a refused connection a connection error), so the retry policy reads
    them as before; timeouts map likewise (``read`` is the longest silence of a stream).
    """
    return openai.DefaultAioHttpClient(verify=tls_context())


@dataclass
class Answer:
    """One HTTP 200 attempt, streamed or not: what the model sent and what it cost."""

    content: str | None
    finish: str | None
    refusal: str | None
    usage: Mapping[str, Any] | None
    model: str | None
    body_ok: bool = True


def request_body(model: str, messages: list[dict[str, Any]], fmt: dict[str, Any], budget: int, *,
                 stream: bool) -> dict[str, Any]:
    """The Chat Completions request of one attempt (strict structured output, the output budget as
    ``max_completion_tokens``; a stream asks for the usage chunk)."""
    body: dict[str, Any] = {"model": model, "messages": messages, "response_format": fmt,
                            "max_completion_tokens": budget}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def send(client: openai.AsyncOpenAI, model: str, messages: list[dict[str, Any]], fmt: dict[str, Any],
               budget: int, *, stream: bool, deadline: Deadline | None = None) -> Answer:
    """One attempt: the answer's content, finish reason, refusal and usage (each event of a stream
    touches ``deadline``: tokens keep arriving, the fill is alive). SDK and transport errors propagate."""
    # encoded here (json_codec), not by the SDK's json.dumps: the body holds the call's whole response
    # schema and messages, and the SDK sends bytes as they are
    body = dump_compact(request_body(model, messages, fmt, budget, stream=stream))
    try:
        if not stream:
            response = await client.post(PATH, cast_to=httpx2.Response, content=body)
            return _answer(_json_body(response.content))
        response = await client.post(PATH, cast_to=httpx2.Response, content=body, stream=True,
                                     stream_cls=openai.AsyncStream)
        try:
            return await _read_stream(response, deadline)
        finally:
            await response.aclose()
    except (openai.APITimeoutError, httpx2.TimeoutException) as exc:
        if _timed_out(exc):
            raise
        # the aiohttp transport reports every aiohttp connection error (a server that hung up, a reset)
        # as httpx2.ConnectTimeout: said here as what it was, so the retry policy reads a connection
        # failure, not a slow model
        raise httpx2.NetworkError(f"connection failed: {_root(exc)!r}") from exc


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _timed_out(exc: BaseException) -> bool:
    """Whether a timeout reported by the SDK was one: the transport's own error (the root of the chain) is
    a ``TimeoutError`` (aiohttp's socket, connect and server timeouts are), or there is no other cause."""
    root = _root(exc)
    return root is exc or isinstance(root, TimeoutError) or not isinstance(root, aiohttp.ClientError)


def _answer(body: dict[str, Any] | None) -> Answer:
    """A whole ``chat.completion`` body read into an Answer (one that is not a JSON object: ``body_ok``
    false, so the attempt counts as malformed and unpriced)."""
    if body is None:
        return Answer(None, None, None, None, None, body_ok=False)
    choice = _first(body.get("choices"))
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    usage = body.get("usage")
    return Answer(message.get("content"), choice.get("finish_reason"), message.get("refusal"),
                  usage if isinstance(usage, Mapping) else None, body.get("model"))


async def _read_stream(response: httpx2.Response, deadline: Deadline | None) -> Answer:
    parts: list[str] = []
    refusal: list[str] = []
    finish = usage = served = None
    done = broken = False
    async for data in sse_data(response.aiter_lines()):
        if deadline is not None:
            deadline.touch()  # tokens keep arriving: the fill is alive
        if done or data.startswith("[DONE]"):
            # read on to the end of the body: an HTTP/1.1 connection is reused only once its response is
            # consumed (closed early, every call would open a new connection)
            done = True
            continue
        try:
            chunk = load(data)
        except ValueError:  # the answer cannot be trusted: read on (the connection), then say so
            broken = True
            continue
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):  # a failure sent as an event, after the 200
            error = chunk["error"]
            message = error.get("message") if isinstance(error, Mapping) else None
            raise openai.APIError(message if isinstance(message, str) and message else "An error occurred during streaming",
                                  response.request, body=error)
        served = chunk.get("model") or served
        if isinstance(chunk.get("usage"), Mapping):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                if delta.get("content"):
                    parts.append(delta["content"])
                if delta.get("refusal"):
                    refusal.append(delta["refusal"])
            if isinstance(choice, dict) and choice.get("finish_reason"):
                finish = choice["finish_reason"]
    if broken:  # a malformed answer, retried as one (``client._read``); what it cost is not known
        return Answer(None, None, None, None, served, body_ok=False)
    return Answer("".join(parts), finish, "".join(refusal) or None, usage, served)


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (the event stream format: ``field: value`` lines, an
    event ends at a blank line, several ``data`` lines join with newlines, ``:`` starts a comment;
    other fields — ``event``, ``id``, ``retry`` — carry nothing a completion needs)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _first(choices: Any) -> dict[str, Any]:
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def _json_body(content: bytes) -> dict[str, Any] | None:
    try:
        data = load(content)
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None
