"""One HTTP attempt of a structured call, streamed or not, read into an ``Answer``; the process's shared
TLS context. No retries here: ``client`` decides (``queue/retry.py``)."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from ignite_dagster.generation.llm.deadline import Deadline


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The SDK's default TLS context, built once per process.

    Building it loads the CA bundle (~40 ms); a client is opened per fill and repair round (clients
    are bound to one event loop), so without sharing, every fill paid that before its first request.
    An SSLContext is safe to share between clients, threads and event loops.
    """
    return httpx2.create_ssl_context()


@dataclass
class Answer:
    """One HTTP 200 attempt, streamed or not: what the model sent and what it cost."""

    content: str | None
    finish: str | None
    refusal: str | None
    usage: Mapping[str, Any] | None
    model: str | None
    body_ok: bool = True


async def send(client: openai.AsyncOpenAI, model: str, messages: list[dict[str, Any]], fmt: dict[str, Any],
               budget: int, *, stream: bool, deadline: Deadline | None = None) -> Answer:
    """One attempt: the answer's content, finish reason, refusal and usage (each chunk of a stream
    touches ``deadline``: tokens keep arriving, the fill is alive). SDK errors propagate."""
    if not stream:
        raw = await client.chat.completions.with_raw_response.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            response_format=fmt,  # type: ignore[arg-type]
            max_completion_tokens=budget,
        )
        body = _json_body(raw.http_response)
        if body is None:
            return Answer(None, None, None, None, None, body_ok=False)
        choices = body.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        usage = body.get("usage")
        return Answer(message.get("content"), choice.get("finish_reason"), message.get("refusal"),
                      usage if isinstance(usage, Mapping) else None, body.get("model"))
    chunks = await client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        response_format=fmt,  # type: ignore[arg-type]
        max_completion_tokens=budget,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: list[str] = []
    refusal: list[str] = []
    finish = usage = served = None
    async for chunk in chunks:
        if deadline is not None:
            deadline.touch()  # tokens keep arriving: the fill is alive
        served = chunk.model or served
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices or []:
            delta = choice.delta
            if delta is not None and delta.content:
                parts.append(delta.content)
            if delta is not None and getattr(delta, "refusal", None):
                refusal.append(delta.refusal)  # type: ignore[arg-type]
            if choice.finish_reason:
                finish = choice.finish_reason
    return Answer("".join(parts), finish, "".join(refusal) or None, usage, served)


def _json_body(response: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(response.content)
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None
