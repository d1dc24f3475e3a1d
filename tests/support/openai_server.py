"""A scripted OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

Why a real server: the ``openai`` SDK sends through its own HTTP stack (httpx2), so transport mocks
never see its requests; and a real socket exercises what production meets — status codes, headers
(``retry-after``), latency, timeouts, dropped connections, concurrency. The server runs in a thread
(``ThreadingHTTPServer``, one thread per connection), binds ``127.0.0.1:0`` and records every request.

Scripting, per route (``"/v1/chat/completions"``, ``"/v1/responses"``, ``"/v1/images/generations"``,
any other path):

* ``server.enqueue(route, reply, ...)`` — replies served first, in order, one per request;
* ``server.respond_with(route, responder)`` — the fallback once the queue is empty: a ``Reply`` served
  every time, or a callable ``(RecordedRequest) -> Reply`` that builds an answer from the request
  (a "model" that reads the prompt);
* ``server.latency`` — a fixed delay for every reply, counted from the request's arrival
  (``Reply.delay`` adds per reply).

``/v1/images/generations`` answers with a small valid base64 PNG unless scripted otherwise. An
unscripted route answers 404 with an OpenAI-style error body, so a test sees what it forgot.

Reply builders (``chat_json``, ``chat_text``, ``chat_refusal``, ``chat_truncated``, ``api_error``,
``rate_limited``, ``quota_exceeded``, ``server_error``, ``image_png``) produce the bodies the real API
sends, including ``usage``.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
IMAGES = "/v1/images/generations"


@dataclass
class Reply:
    """One scripted HTTP answer. ``drop`` closes the connection without answering (a network fault)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None
    drop: bool = False
    chunk_delay: float = 0.0  # streamed answers: pause before each content chunk (a slow or stalled model)

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body if self.body is not None else {}).encode()


@dataclass
class RecordedRequest:
    """What the server received: enough for tests to assert on prompts, budgets and headers."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    peer: tuple[str, int] = ("", 0)  # the client's address: one port per connection (reuse shows)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    @property
    def max_tokens(self) -> int | None:
        """The output budget the client asked for (either spelling of the parameter)."""
        data = self.json or {}
        return data.get("max_completion_tokens") or data.get("max_tokens") or data.get("max_output_tokens")

    def text(self) -> str:
        """All message contents joined: what a scripted "model" reads."""
        data = self.json or {}
        parts = []
        for message in data.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(c.get("text", "") for c in content if isinstance(c, dict))
        return "\n".join(parts)


Responder = Reply | Callable[[RecordedRequest], Reply]


def _usage(prompt_tokens: int, completion_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def chat_completion(
    content: str | None,
    *,
    finish_reason: str = "stop",
    refusal: str | None = None,
    model: str = "test-model",
    prompt_tokens: int = 100,
    completion_tokens: int = 50,
    cached_tokens: int = 0,
) -> dict[str, Any]:
    """A ``chat.completion`` body with one choice and usage, as the real API returns it."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(prompt_tokens, completion_tokens, cached_tokens),
    }


def chat_json(obj: Any, *, delay: float = 0.0, **kw: Any) -> Reply:
    """A successful structured answer: ``obj`` serialised as the message content."""
    return Reply(body=chat_completion(json.dumps(obj), **kw), delay=delay)


def chat_text(content: str, *, delay: float = 0.0, **kw: Any) -> Reply:
    """An answer whose content is arbitrary text (e.g. malformed JSON)."""
    return Reply(body=chat_completion(content, **kw), delay=delay)


def chat_refusal(message: str = "I can't help with that.", **kw: Any) -> Reply:
    """A structured-output refusal: ``content`` null and ``refusal`` set."""
    return Reply(body=chat_completion(None, refusal=message, **kw))


def chat_truncated(partial: str = '{"items": [{"id": 1, "text": "cut', **kw: Any) -> Reply:
    """Output cut at the token budget: ``finish_reason: length`` and partial JSON."""
    kw.setdefault("completion_tokens", 4000)
    return Reply(body=chat_completion(partial, finish_reason="length", **kw))


def api_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    type_: str = "server_error",
    headers: dict[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """An OpenAI-style error body ``{"error": {message, type, code, param}}``."""
    body = {"error": {"message": message, "type": type_, "code": code, "param": None}}
    return Reply(status=status, body=body, headers=dict(headers or {}), delay=delay)


def rate_limited(retry_after: float | None = None, retry_after_ms: int | None = None) -> Reply:
    """A transient 429 with the headers a real provider sends."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    return api_error(429, "Rate limit reached", code="rate_limit_exceeded", type_="requests", headers=headers)


def quota_exceeded() -> Reply:
    """The 429 that no wait cures: the account has no quota left."""
    return api_error(
        429, "You exceeded your current quota, please check your plan and billing details.",
        code="insufficient_quota", type_="insufficient_quota",
    )


def server_error(status: int = 500) -> Reply:
    return api_error(status, "The server had an error while processing your request.")


def tiny_png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real, decodable PNG made with zlib (no imaging dependency)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def image_png(n: int = 1, png: bytes | None = None) -> Reply:
    """An ``images.generate`` answer with ``b64_json`` data."""
    data = base64.b64encode(png or tiny_png()).decode()
    return Reply(body={
        "created": int(time.time()),
        "data": [{"b64_json": data, "revised_prompt": None} for _ in range(n)],
        "usage": {"input_tokens": 10, "output_tokens": 100, "total_tokens": 110},
    })


def _default_image_responder(request: RecordedRequest) -> Reply:
    n = int((request.json or {}).get("n") or 1)
    return image_png(n)


class OpenAICompatServer:
    """The scripted server; use as a context manager or call ``start()``/``stop()``."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._queues: dict[str, deque[Responder]] = defaultdict(deque)
        self._fallback: dict[str, Responder] = {IMAGES: _default_image_responder}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> OpenAICompatServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Without this, Nagle's algorithm and the client's delayed ACK add ~40 ms per reply.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet tests
                return

            def _handle(self) -> None:
                server._serve(self)

            do_GET = _handle
            do_POST = _handle
            do_PUT = _handle
            do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog (5) drops SYNs under a burst: 1 s stalls
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="openai-compat", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be set to."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ------------------------------------------------------------------------------
    def enqueue(self, route: str, *replies: Responder) -> None:
        """Serve these replies, one per request on ``route``, before the fallback."""
        with self._lock:
            self._queues[route].extend(replies)

    def respond_with(self, route: str, responder: Responder) -> None:
        """The answer once the queue is empty: a fixed Reply or a callable of the request."""
        with self._lock:
            self._fallback[route] = responder

    def requests_to(self, route: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == route]

    def reset(self) -> None:
        """Forget requests and counters (scripts stay)."""
        with self._lock:
            self.requests.clear()
            self.in_flight = 0
            self.max_in_flight = 0

    # -- serving --------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        request = RecordedRequest(
            method=handler.command,
            path=path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            received_at=time.monotonic(),
            peer=tuple(handler.client_address[:2]),
        )
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            queue = self._queues.get(path)
            responder = queue.popleft() if queue else self._fallback.get(path)
        try:
            if responder is None:
                reply = api_error(404, f"no script for {handler.command} {path}", type_="invalid_request_error")
            elif isinstance(responder, Reply):
                reply = responder
            else:
                try:
                    reply = responder(request)
                except Exception as exc:  # a broken script shows up as a 500 naming it, not a hang
                    reply = api_error(500, f"scripted responder failed: {exc!r}")
            # Latency is measured from receipt: the reply leaves ``latency + reply.delay`` seconds after
            # the request arrived, whatever the script spent building it (so a benchmark's "200 ms per
            # call" is exactly that, not 200 ms plus this server's own overhead).
            remaining = request.received_at + self.latency + reply.delay - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            if reply.drop:
                handler.close_connection = True
                handler.connection.close()
                return
            if reply.status == 200 and (request.json or {}).get("stream") and isinstance(reply.body, dict) \
                    and "choices" in reply.body:
                self._stream(handler, request, reply)
                return
            payload = reply.encode()
            handler.send_response(reply.status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            handler.send_header("x-request-id", f"req_{uuid.uuid4().hex[:12]}")
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            # headers and body in one write (end_headers() would send the headers on their own)
            handler._headers_buffer.append(b"\r\n" + payload)  # type: ignore[attr-defined]
            try:
                handler.flush_headers()
            except (BrokenPipeError, ConnectionResetError):
                handler.close_connection = True
        finally:
            with self._lock:
                self.in_flight -= 1


    @staticmethod
    def _stream(handler: BaseHTTPRequestHandler, request: RecordedRequest, reply: Reply) -> None:
        """A ``chat.completion`` body sent as server-sent events, the way the API streams it: a role
        chunk, the content in a few pieces, the finish reason, then usage (when asked for) and [DONE]."""
        body = reply.body
        choice = body["choices"][0]
        message = choice.get("message") or {}
        base = {"id": body.get("id"), "object": "chat.completion.chunk", "created": body.get("created"),
                "model": body.get("model")}

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

        content = message.get("content") or ""
        step = max(1, len(content) // 4 + 1)
        pieces = [content[i : i + step] for i in range(0, len(content), step)]
        events = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        if message.get("refusal"):
            events.append(event([{"index": 0, "delta": {"refusal": message["refusal"]}, "finish_reason": None}]))
        events += [event([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
        events.append(event([{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason")}]))
        if ((request.json or {}).get("stream_options") or {}).get("include_usage"):
            events.append(event([], usage=body.get("usage")))
        events.append(b"data: [DONE]\n\n")
        try:
            handler.send_response(200)
            handler.send_header("content-type", "text/event-stream")
            handler.send_header("transfer-encoding", "chunked")
            handler.send_header("x-request-id", f"req_{uuid.uuid4().hex[:12]}")
            handler.end_headers()
            for n, data in enumerate(events):
                if reply.chunk_delay and 0 < n < len(events) - 2:
                    time.sleep(reply.chunk_delay)
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True


# --- a scripted course-writing "model" ---------------------------------------------------------------
# Answers the structured calls of ignite_dagster.generation.llm from what the prompt says, the way a
# real model would: it reads the response schema's name and the JSON item specs embedded in the
# prompt. Faults are injected per item id to drive validation and repair.

FAULTS = ("two_options", "expected_absent", "wrong_index", "wrong_numeric", "no_blank", "omit", "wrong_id",
          "off_subject", "same_options")


def _json_arrays(text: str) -> list[list[Any]]:
    """Every JSON array embedded in ``text`` (the item specs the prompt carries)."""
    decoder = json.JSONDecoder()
    found: list[list[Any]] = []
    pos = text.find("[")
    while pos != -1:
        try:
            value, end = decoder.raw_decode(text, pos)
        except ValueError:
            pos = text.find("[", pos + 1)
            continue
        if isinstance(value, list):
            found.append(value)
        pos = text.find("[", max(end, pos + 1))
    return found


def _fmt(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else str(n)


class ScriptedCourseModel:
    """A responder for ``/v1/chat/completions`` that writes courses.

    ``faults``: item id → fault kind used in *fill* answers (see FAULTS). ``repair_faults``: the same for
    repair answers (default: repairs come back correct). ``calls`` counts answers per schema name.
    """

    def __init__(
        self,
        faults: dict[int, str] | None = None,
        repair_faults: dict[int, str] | None = None,
        model: str = "test-model",
    ) -> None:
        self.faults = dict(faults or {})
        self.repair_faults = dict(repair_faults or {})
        self.model = model
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        data = request.json or {}
        fmt = (data.get("response_format") or {}).get("json_schema") or {}
        schema, wire = fmt.get("name", ""), fmt.get("schema") or {}
        prompt = request.text()
        found = re.search(r"^Subject: (.+)$", prompt, re.MULTILINE)
        subject = found.group(1).strip() if found else "the subject"
        with self._lock:
            self.calls[schema] += 1
        if schema == "CourseOverview":
            out: Any = {"title": f"Practice course: {subject}", "description": "Short practice items with hints."}
        elif schema == "CoursePlan":
            out = self._plan(wire, subject)
        elif schema == "StudyTextOut":
            out = self._study_text("imageDescription" in (wire.get("properties") or {}), subject)
        elif schema == "ItemBatch":
            specs = next((a for a in _json_arrays(prompt) if a and isinstance(a[0], dict) and "mode" in a[0]), [])
            out = {"items": [i for s in specs
                             if (i := self.item(s, self.faults.get(s["item"] - 1), subject)) is not None]}
        elif schema == "RepairedItems":
            blocks = next((a for a in _json_arrays(prompt) if a and isinstance(a[0], dict) and "spec" in a[0]), [])
            out = {"items": [i for b in blocks
                             if (i := self.item(b["spec"], self.repair_faults.get(b["spec"]["item"] - 1), subject))
                             is not None]}
        else:
            return api_error(400, f"unexpected response_format {schema!r}", type_="invalid_request_error")
        content = json.dumps(out)
        return Reply(body=chat_completion(
            content, model=self.model, prompt_tokens=max(1, len(prompt) // 4), completion_tokens=max(1, len(content) // 4),
        ))

    @staticmethod
    def _plan(wire: dict[str, Any], subject: str = "the subject") -> dict[str, Any]:
        """A plan shaped exactly as the request's schema asks (counts read from minItems)."""
        props = wire.get("properties") or {}
        groups = props.get("groups", {})
        group_props = (groups.get("items") or {}).get("properties") or {}
        n_groups = groups.get("minItems", 1)
        n_objectives = (group_props.get("objectives") or {}).get("minItems", 1)
        n_texts = (props.get("studyTexts") or {}).get("minItems", 0)
        plan: dict[str, Any] = {
            "title": f"Planned practice course: {subject}",
            "description": "Practice items planned skill by skill.",
            "groups": [],
            "levels": [f"Stage {n + 1} of practice" for n in range(props.get("levels", {}).get("minItems", 1))],
        }
        for g in range(n_groups):
            group: dict[str, Any] = {"name": f"Skill {chr(65 + g)}",
                                     "objectives": [f"Use skill {chr(65 + g)} step {k + 1}" for k in range(n_objectives)]}
            if "studyText" in group_props:
                group["studyText"] = g % max(1, n_texts) + 1
            plan["groups"].append(group)
        if n_texts:
            plan["studyTexts"] = [f"Reading {n + 1} about {subject}" for n in range(n_texts)]
        return plan

    @staticmethod
    def _study_text(wants_image: bool, subject: str = "the subject") -> dict[str, Any]:
        out: dict[str, Any] = {
            "title": f"Putting numbers together: {subject}",
            "sections": [
                {"title": "What it means", "body": "Adding puts two groups together. We count all of them, one by one."},
                {"title": "How to do it", "body": "Start at the bigger number and count on. Check by counting again."},
            ],
            "learningObjectives": ["Add two numbers", "Check an answer"],
            "keywords": ["add", "sum", "count on"],
            "estimatedReadingTime": 3,
            "difficulty": "easy",
        }
        if wants_image:
            out["imageDescription"] = "a number line from 0 to 20 with jumps drawn as arcs"
        return out

    @staticmethod
    def item(spec: dict[str, Any], fault: str | None = None, subject: str = "the subject") -> dict[str, Any] | None:
        """A correct item for ``spec`` (naming ``subject``, as the quality gates ask), or one with the given
        fault: also ``off_subject`` (never names it), ``same_options`` (four equal options)."""
        if fault == "omit":
            return None
        iid = spec["item"] - 1
        arithmetic = spec.get("arithmetic")
        expr = arithmetic["expression"] if arithmetic else f"the idea of item {iid}"
        text = (f"Item {iid}: {expr} = [blank]" if arithmetic
                else f"Item {iid}: in {subject}, the word for {expr} is [blank].")
        if fault == "off_subject":
            text = f"Item {iid}: a healthy breakfast gives you [blank]."
        if fault == "no_blank":
            text = f"Item {iid}: think about {expr} and answer"
        item: dict[str, Any] = {
            "text": text, "hint": "Count on from the bigger number.",
            "explain": "Putting both groups together gives the total.",
        }
        if fault == "off_subject":
            item.update(hint="Think about your breakfast.", explain="A good breakfast gives you energy.")
        if fault == "wrong_id":
            item["id"] = iid + 100  # a model that writes ids of its own; position is what counts
        if spec["mode"] == "numeric":
            answer = float(arithmetic["answer"]) if arithmetic else 42.0
            item["answer"] = answer + 1 if fault == "wrong_numeric" else answer
            return item
        if arithmetic:
            e = float(arithmetic["answer"])
            values = [e + 1, e + 2, e + 3, e + 4] if fault == "expected_absent" else [e + 1, e, e + 2, e + 3]
            options = [_fmt(v) for v in values]
            correct = 0 if fault == "wrong_index" else (1 if fault != "expected_absent" else 0)
        else:
            options = [f"choice {k} of item {iid}" for k in "ABCD"]
            correct = 1
        if fault == "same_options":
            options = [options[correct]] * 4
        if fault == "two_options":
            options = options[:2]
            correct = min(correct, 1)
        item["options"] = options
        item["correctIndex"] = correct
        return item
