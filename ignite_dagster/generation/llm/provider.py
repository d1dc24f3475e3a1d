"""A thin async client for structured answers from any OpenAI-compatible server.

Decisions, and why:

* **One retry layer, ours.** The SDK client is built with ``max_retries=0``; this module retries. Only
  here do we see every attempt, so every attempt's tokens are counted (a truncated or malformed answer
  is billed too), ``retry-after``/``retry-after-ms`` are honoured exactly, and each failure ends in one of
  the coded reasons the job records (``GenerationFailed.reason_code``). Two layers would multiply the
  attempts and hide the ones the SDK swallowed.
* **Chat Completions structured outputs**: ``chat.completions.create`` with a strict ``json_schema``
  ``response_format`` built once per pydantic model (``response_format()``), and the answer validated
  into that model here (``model_validate_json``). This is the wire format ``chat.completions.parse``
  sends; we do the parsing ourselves because (a) on malformed output ``parse`` raises a bare pydantic
  error without the completion, so that billed attempt's ``usage`` would be lost, while here every
  attempt's body is read first and its usage recorded; (b) ``finish_reason``,
  ``refusal`` and ``usage`` are handled explicitly, not through SDK exception types; (c) it costs
  ~2.5× less client CPU per call (measured 2.0 vs 5.3 ms: ``parse`` regenerates the JSON schema and
  builds generic response models every call), which is most of a fill's overhead above its critical
  path. Chat Completions is the API "OpenAI-compatible" servers (vLLM, Ollama, LiteLLM, Azure …)
  actually share; the Responses API is not implemented by most of them. The output budget is sent as
  ``max_completion_tokens``.
* **Failure policy** (each bound is a setting or a constructor argument; sleeps are injectable). Whether
  the *queue* retries a failed job follows the shared table ``types.RETRYABLE_REASONS`` (rate limited,
  unavailable, truncated: yes; the rest: no), so there is one source of truth for it.

  ===========================================  =========================================================
  429 with code ``insufficient_quota``          fail at once: ``provider_quota``
  429 otherwise                                 wait ``retry-after-ms``/``retry-after`` (else backoff),
                                                at most ``llm_max_retries`` times → ``provider_rate_limited``.
                                                A requested wait above ``max_retry_after_seconds`` is not
                                                sat out inside a run: ``provider_rate_limited`` at once.
  5xx, 408, 409, timeout, connection error      exponential backoff with jitter (``retry-after`` honoured
                                                when sent), at most ``llm_max_retries`` times →
                                                ``provider_unavailable``
  other 4xx (bad request, auth, unknown model)  ``provider_error`` at once (the same request fails again)
  ``finish_reason: length``                     once more with the output budget doubled → ``output_truncated``
  refusal / ``content_filter``                  ``content_refused``
  malformed JSON / schema mismatch / empty      at most ``malformed_retries`` more attempts → ``provider_error``
  ===========================================  =========================================================

* **Concurrency**: a semaphore of ``llm_concurrency`` is held per HTTP attempt only, never across a
  backoff sleep, so one throttled call does not starve the others.
* **The shared provider budget** (``ignite_dagster.budget``, when IGNITE_LLM_RPM / TPM / MAX_IN_FLIGHT
  are set): every HTTP attempt first takes a grant from the budget of this endpoint + model, shared by
  every run, process and daemon through Postgres, reserving its output budget + prompt/4 tokens; the
  grant is released with the tokens the provider reported. A 429 pauses the whole budget for its
  Retry-After (or the backoff) instead of this call sleeping alone; the wait for a grant never counts
  against the HTTP timeout, only against the fill deadline.
* **Account-wide failures stop the client**: after ``insufficient_quota`` or a 401/403/404 no further
  request is sent by this client (calls still waiting fail with the same reason), so a fill with no
  quota left makes exactly one request, not one per batch.
* **Deadlines fit streaming** (``Deadline``): a course's fill deadline (``fill_deadline_seconds``) counts
  from its first HTTP attempt, not from when the fill was queued behind other courses, and is extended
  while its streams keep sending tokens (each chunk moves it to at least ``timeout_seconds`` ahead): a
  slow but steady model finishes, a stalled stream still fails within the silence timeout as
  ``provider_timeout``.
* **Output budgets fit the schema and the slot** (``output_budget``): a call asks for no more tokens than
  its response schema can hold (``schemas.schema_max_tokens``: items × bounded lengths) and than the
  server's slot leaves after the prompt (llama.cpp ``/props`` reports the slot's ``n_ctx``); a truncated
  answer is retried once with the budget doubled, still within the slot.
* The client and the semaphore belong to one event loop: open the client with ``async with`` inside
  the coroutine that uses it (the filler does so per fill / repair call). The TLS context (loading the
  CA bundle costs ~40 ms) is built once per process and shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.utils
import functools
import json
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import httpx2
import openai
from pydantic import BaseModel

from ignite_dagster.budget import BudgetWaitTooLong, ProviderBudget, estimate_tokens, text_budget
from ignite_dagster.budget.provider import reported_tokens
from ignite_dagster.config import ConfigError, Settings
from ignite_dagster.generation.llm.cache import LLMCache, cache_key
from ignite_dagster.generation.llm.pricing import token_cost
from ignite_dagster.generation.llm.schemas import SchemaPolicy, schema_max_tokens
from ignite_dagster.generation.types import GenerationFailed

log = logging.getLogger(__name__)

PROVIDER_NAME = "openai-compatible"

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class UsageMeter:
    """Everything one fill (or repair) spent, summed over every attempt, failed ones included.

    ``calls`` counts HTTP attempts made; ``cache_hits`` counts answers served from the cache instead.
    ``cost_usd`` becomes ``None`` (unknown) as soon as one billed attempt cannot be priced — the model
    has no price row, or the response had no ``usage`` — and stays unknown: a partial sum would
    under-report.
    """

    model: str
    prices: Mapping[str, Mapping[str, Decimal]]
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    cache_hits: int = 0
    failed_attempts: int = 0
    cost_usd: Decimal | None = field(default_factory=Decimal)
    priced_cost_usd: Decimal = field(default_factory=Decimal)
    unpriced_models: set[str] = field(default_factory=set)
    served_models: set[str] = field(default_factory=set)
    # the generation's own span (monotonic): first HTTP attempt sent, last answer received
    first_call_at: float | None = None
    last_answer_at: float | None = None

    def generation_ms(self) -> int | None:
        """First call → last answer in ms; None when no call was made (every answer from the cache)."""
        if self.first_call_at is None or self.last_answer_at is None:
            return None
        return int((self.last_answer_at - self.first_call_at) * 1000)

    def record_response(self, usage: Mapping[str, Any] | None, served_model: str | None) -> None:
        """Add one answered attempt (HTTP 200) and its cost."""
        if served_model:
            self.served_models.add(served_model)
        if not usage:
            self.cost_usd = None
            self.unpriced_models.add(f"{served_model or self.model} (no usage reported)")
            return
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cached_tokens += cached
        cost = token_cost(self.prices, self.model, tokens_in, tokens_out, cached_in=cached, served_model=served_model)
        if cost is None:
            self.cost_usd = None
            self.unpriced_models.add(self.model)
            return
        self.priced_cost_usd += cost
        if self.cost_usd is not None:
            self.cost_usd += cost


@dataclass(frozen=True)
class ProviderConfig:
    """What the client needs, taken from Settings (``from_settings``) or given directly in tests."""

    api_key: str
    model: str
    base_url: str | None = None
    timeout_seconds: float = 60.0
    max_retries: int = 3
    max_output_tokens: int = 4000
    concurrency: int = 8
    prices: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 8.0
    max_retry_after_seconds: float = 120.0
    malformed_retries: int = 2
    timeout_retries: int = 1
    stream: bool = True
    fill_deadline_seconds: float | None = None
    schema_policy: SchemaPolicy = field(default_factory=SchemaPolicy)
    discover_slots: bool = True
    budget: ProviderBudget | None = None  # the shared budget of this endpoint + model (None: unlimited)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ProviderConfig:
        """Fail loudly (ConfigError naming every missing variable) when no model is configured."""
        settings.require("model", "OPENAI_API_KEY", "IGNITE_TEXT_MODEL")
        try:
            policy = SchemaPolicy.parse(settings.llm_schema_drop)
        except ValueError as exc:  # a bad setting is a configuration error, named, not an internal one
            raise ConfigError("model", [], [f"IGNITE_LLM_SCHEMA_DROP: {exc}"]) from exc
        assert settings.openai_api_key and settings.text_model  # narrowed by require()
        values: dict[str, Any] = {
            "api_key": settings.openai_api_key,
            "model": settings.text_model,
            "base_url": settings.openai_base_url,
            "timeout_seconds": settings.llm_timeout_seconds,
            "max_retries": settings.llm_max_retries,
            "max_output_tokens": settings.llm_max_output_tokens,
            "concurrency": settings.llm_concurrency,
            "prices": settings.prices(),
            "stream": settings.llm_stream,
            "fill_deadline_seconds": settings.llm_fill_deadline_seconds or None,
            "schema_policy": policy,
            "budget": text_budget(settings),
        }
        values.update(overrides)
        return cls(**values)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, then ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    value = headers.get("retry-after")
    if value:
        try:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(0.0, email.utils.mktime_tz(parsed) - time.time())
        except (TypeError, ValueError, OverflowError):
            return None
    return None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The SDK's default TLS context, built once per process.

    Building it loads the CA bundle (~40 ms); a client is opened per fill and repair round (clients
    are bound to one event loop), so without sharing, every fill paid that before its first request.
    An SSLContext is safe to share between clients, threads and event loops.
    """
    return httpx2.create_ssl_context()


def strict_json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form strict structured outputs require.

    Every object closes (``additionalProperties: false``) and lists all its properties as required
    (optional fields are expressed as nullable, see ``schemas``); defaults are dropped. Written here
    rather than taken from the SDK's private helpers so the wire format is ours to see and test.
    """
    root = copy.deepcopy(schema.model_json_schema())

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                visit(child)
            return
        if not isinstance(node, dict):
            return
        node.pop("default", None)
        properties = node.get("properties")
        if isinstance(properties, dict):
            node["additionalProperties"] = False
            node["required"] = list(properties)
            for child in properties.values():
                visit(child)
        for key in ("$defs", "definitions"):
            if isinstance(node.get(key), dict):
                for child in node[key].values():
                    visit(child)
        for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems"):
            if key in node:
                visit(node[key])

    visit(root)
    return root


def response_format(name: str, schema: dict[str, Any], policy: SchemaPolicy | None = None) -> dict[str, Any]:
    """The strict ``response_format`` for a wire schema (see ``schemas``), minus keywords the server rejects."""
    wire = policy.apply(schema) if policy is not None else schema
    return {"type": "json_schema", "json_schema": {"name": name, "schema": wire, "strict": True}}


def _failed(reason: str, message: str) -> GenerationFailed:
    """A coded failure; whether the queue retries it follows the shared table (types.RETRYABLE_REASONS)."""
    return GenerationFailed(reason, message)


@functools.cache
def _model_schema(schema: type[BaseModel]) -> dict[str, Any]:
    return strict_json_schema(schema)


@dataclass(frozen=True)
class ServerSlots:
    """What a server reports about its decoding slots (llama.cpp ``GET /props``); None: not reported."""

    slots: int | None = None
    slot_ctx: int | None = None  # tokens one slot holds: prompt + answer (``default_generation_settings.n_ctx``)


_SLOTS: dict[str, ServerSlots] = {}


def _positive(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def discover_slots(base_url: str | None, api_key: str, timeout: float = 5.0) -> ServerSlots:
    """The server's parallel slots and each slot's context, where it reports them (llama.cpp: ``GET
    /props`` → ``total_slots`` and ``default_generation_settings.n_ctx``, the context of one slot).

    Requests beyond a server's slots wait inside the server, and that wait would count against our
    timeout; the client never sends more at once than the server can decode, and never asks one call
    for more output than its slot holds after the prompt (the server would cut it off, ``truncated``).
    Hosted APIs report neither (the settings alone apply). Cached per base URL for the process.
    """
    if not base_url:
        return ServerSlots()
    if base_url in _SLOTS:
        return _SLOTS[base_url]
    root = base_url.rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    found = ServerSlots()
    try:
        async with httpx2.AsyncClient(timeout=timeout) as http:
            resp = await http.get(f"{root}/props", headers={"authorization": f"Bearer {api_key}"})
        if resp.status_code == 200:
            body = resp.json()
            settings = body.get("default_generation_settings")
            ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
            found = ServerSlots(_positive(body.get("total_slots")), _positive(ctx))
    except (httpx2.HTTPError, ValueError, AttributeError):
        found = ServerSlots()
    _SLOTS[base_url] = found
    if found.slots or found.slot_ctx:
        log.info("model server %s reports %s slots of %s tokens", base_url, found.slots, found.slot_ctx)
    return found


# A prompt's tokens, estimated from its characters: English and JSON run about 4 characters per token on
# the tokenizers we meet; 3 over-estimates, so a slot is never over-filled.
PROMPT_CHARS_PER_TOKEN = 3
SLOT_MARGIN_TOKENS = 64


def output_budget(configured: int, schema: dict[str, Any] | None, messages: list[dict[str, Any]],
                  slot_ctx: int | None) -> tuple[int, int | None]:
    """``(budget, ceiling)``: the output tokens to ask for, and the most a retry may ask (None: no
    ceiling). The budget is the setting, lowered to what the response schema can hold; the ceiling is
    what the server's slot leaves after the prompt."""
    budget = configured
    bound = schema_max_tokens(schema) if schema is not None else None
    if bound is not None:
        budget = min(budget, bound)
    ceiling = None
    if slot_ctx:
        prompt = len(json.dumps(messages, ensure_ascii=False)) // PROMPT_CHARS_PER_TOKEN
        ceiling = max(1, slot_ctx - prompt - SLOT_MARGIN_TOKENS)
        budget = min(budget, ceiling)
    return max(1, budget), ceiling


class Deadline:
    """A course's fill (or repair round) deadline: ``seconds`` from its first call, extended while its
    streams keep sending tokens (never earlier than ``grace`` after the last token).

    Before the first call it has not started: a fill queued behind other courses' calls (the client's
    concurrency, the server's slots) is not timed while it waits. ``at()`` is the current expiry
    (monotonic), which the shared provider budget uses to bound its wait."""

    def __init__(self, seconds: float, grace: float) -> None:
        self.seconds = seconds
        self.grace = grace
        self.started: float | None = None
        self.last_token: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def touch(self) -> None:
        self.last_token = time.monotonic()

    def at(self) -> float:
        if self.started is None:
            return time.monotonic() + self.seconds
        end = self.started + self.seconds
        return max(end, self.last_token + self.grace) if self.last_token is not None else end

    def remaining(self) -> float:
        return self.at() - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


async def _within(coro: Coroutine[Any, Any, R], deadline: Deadline | None) -> R:
    """Await ``coro`` until the (moving) deadline passes; then cancel it and raise TimeoutError."""
    if deadline is None:
        return await coro
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline.remaining()))
            if done:
                return task.result()
            if deadline.expired():
                raise TimeoutError("fill deadline passed")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@dataclass
class _Answer:
    """One HTTP 200 attempt, streamed or not: what the model sent and what it cost."""

    content: str | None
    finish: str | None
    refusal: str | None
    usage: Mapping[str, Any] | None
    model: str | None
    body_ok: bool = True


class StructuredClient:
    """Structured calls with our retry policy; ``async with StructuredClient(config) as client: …``."""

    def __init__(self, config: ProviderConfig, *, cache: LLMCache | None = None, sleep: Sleep | None = None) -> None:
        self.config = config
        self.cache = cache
        self._sleep: Sleep = sleep or asyncio.sleep
        self._client: openai.AsyncOpenAI | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._fatal: GenerationFailed | None = None
        self.concurrency = max(1, config.concurrency)
        self.slot_ctx: int | None = None

    async def __aenter__(self) -> StructuredClient:
        # Streaming: ``read`` is the longest silence between two chunks, so a slow but working model
        # is never cut off while a stalled one is; without streaming it bounds the whole answer.
        timeout = httpx2.Timeout(self.config.timeout_seconds, connect=min(10.0, self.config.timeout_seconds))
        self._client = openai.AsyncOpenAI(
            api_key=self.config.api_key,
            base_url=self.config.base_url,
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context()),
        )
        server = (await discover_slots(self.config.base_url, self.config.api_key) if self.config.discover_slots
                  else ServerSlots())
        self.concurrency = max(1, min(self.config.concurrency, server.slots or self.config.concurrency))
        self.slot_ctx = server.slot_ctx
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._fatal = None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = None
        self._semaphore = None

    def new_deadline(self) -> Deadline | None:
        """A whole-fill deadline (``fill_deadline_seconds``; see ``Deadline``); None: none."""
        seconds = self.config.fill_deadline_seconds
        return Deadline(seconds, self.config.timeout_seconds) if seconds else None

    def new_meter(self) -> UsageMeter:
        return UsageMeter(model=self.config.model, prices=self.config.prices)

    async def _grant(self, messages: list[dict[str, Any]], fmt: dict[str, Any], max_tokens: int,
                     deadline: Deadline | None, purpose: str) -> Any:
        """A grant from the shared budget (None without one), reserving output budget + prompt/4 tokens.

        Waiting for the budget counts against the fill deadline (a provider_timeout past it), never
        against the HTTP timeout: the request has not been sent yet."""
        budget = self.config.budget
        if budget is None:
            return None
        try:
            return await budget.acquire_async(estimate_tokens(max_tokens, messages, fmt),
                                              deadline=deadline.at() if deadline is not None else None,
                                              sleep=self._sleep)
        except BudgetWaitTooLong as exc:
            raise _failed("provider_timeout", f"{purpose}: the fill deadline passes before the shared provider "
                                              f"budget has room ({exc})") from exc

    async def _settle(self, grant: Any, tokens: int | None) -> None:
        """Release a grant with the tokens the provider reported (None: keep the reservation counted)."""
        if grant is not None and self.config.budget is not None:
            await self.config.budget.release_async(grant, tokens)

    def _backoff(self, retry_number: int) -> float:
        base = self.config.backoff_base_seconds * (2**retry_number)
        return min(self.config.backoff_cap_seconds, base) * (1 - 0.25 * random.random())

    def _check_deadline(self, deadline: Deadline | None, purpose: str) -> None:
        if deadline is not None and deadline.expired():
            raise _failed(
                "provider_timeout",
                f"{purpose}: the fill deadline ({self.config.fill_deadline_seconds:.0f}s) passed before this call finished",
            )

    async def _send(self, messages: list[dict[str, Any]], fmt: dict[str, Any], budget: int,
                    deadline: Deadline | None = None) -> _Answer:
        assert self._client is not None
        if not self.config.stream:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                response_format=fmt,  # type: ignore[arg-type]
                max_completion_tokens=budget,
            )
            body = _json_body(raw.http_response)
            if body is None:
                return _Answer(None, None, None, None, None, body_ok=False)
            choices = body.get("choices")
            choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
            message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            usage = body.get("usage")
            return _Answer(message.get("content"), choice.get("finish_reason"), message.get("refusal"),
                           usage if isinstance(usage, Mapping) else None, body.get("model"))
        stream = await self._client.chat.completions.create(
            model=self.config.model,
            messages=messages,  # type: ignore[arg-type]
            response_format=fmt,  # type: ignore[arg-type]
            max_completion_tokens=budget,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts: list[str] = []
        refusal: list[str] = []
        finish = usage = model = None
        async for chunk in stream:
            if deadline is not None:
                deadline.touch()  # tokens keep arriving: the fill is alive
            model = chunk.model or model
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
        return _Answer("".join(parts), finish, "".join(refusal) or None, usage, model)

    async def parse(
        self,
        messages: list[dict[str, Any]],
        schema: type[T],
        *,
        meter: UsageMeter,
        prompt_version: str,
        purpose: str = "call",
        use_cache: bool = True,
        json_schema: dict[str, Any] | None = None,
        schema_name: str | None = None,
        deadline: Deadline | None = None,
    ) -> T:
        """One structured answer parsed into ``schema``, or GenerationFailed with a reason code.

        ``json_schema`` is the wire schema (built per call from the skeleton, see ``schemas``); without
        it the pydantic model's strict schema is sent. ``deadline`` (see ``new_deadline``) bounds every
        attempt and wait of this call; it starts with the first attempt of its fill. ``use_cache=False`` skips the answer cache for
        this call (repairs: asking again must be able to give a different answer).
        """
        if self._client is None or self._semaphore is None:
            raise RuntimeError("StructuredClient used outside 'async with'")
        name = schema_name or schema.__name__
        wire = json_schema if json_schema is not None else _model_schema(schema)
        fmt = response_format(name, wire, self.config.schema_policy)
        key = cache_key(self.config.model, prompt_version, fmt, messages) if self.cache and use_cache else None
        if self.cache is not None and key is not None:
            entry = await self.cache.get(key)
            if entry is not None:
                try:
                    parsed = schema.model_validate(entry.parsed)
                except ValueError:
                    parsed = None
                if parsed is not None:
                    meter.cache_hits += 1
                    log.debug("llm cache hit for %s (%s)", purpose, key)
                    return parsed

        budget, ceiling = output_budget(self.config.max_output_tokens, wire, messages, self.slot_ctx)
        transient = 0
        timeouts = 0
        malformed = 0
        truncated = False
        while True:
            self._check_deadline(deadline, purpose)
            try:
                async with self._semaphore:
                    if self._fatal is not None:
                        # An account-wide failure (no quota, bad key, unknown model) dooms every call:
                        # waiting calls stop here instead of each paying for the same answer.
                        raise _failed(self._fatal.reason_code, f"{purpose}: not sent: {self._fatal.message}")
                    self._check_deadline(deadline, purpose)
                    grant = await self._grant(messages, fmt, budget, deadline, purpose)
                    meter.calls += 1
                    if deadline is not None:
                        deadline.start()
                    if meter.first_call_at is None:
                        meter.first_call_at = time.monotonic()
                    try:
                        answer = await _within(self._send(messages, fmt, budget, deadline), deadline)
                    except openai.APIStatusError:
                        await self._settle(grant, 0)  # refused: the provider billed nothing
                        raise
                    except Exception:
                        await self._settle(grant, None)  # cut off: the reservation stays counted
                        raise
                    await self._settle(grant, reported_tokens(answer.usage) if answer.body_ok else None)
            except openai.APIStatusError as exc:
                meter.failed_attempts += 1
                status = exc.status_code
                if status == 429 and "insufficient_quota" in (exc.code, exc.type):  # code (OpenAI) or type (some proxies)
                    self._fatal = _failed("provider_quota", f"{purpose}: provider quota exhausted: {exc.message}")
                    raise self._fatal from exc
                transient_kind = "provider_rate_limited" if status == 429 else "provider_unavailable"
                if status not in (408, 409, 429) and status < 500:
                    failure = _failed("provider_error", f"{purpose}: provider rejected the request (HTTP {status}): {exc.message}")
                    if status in (401, 403, 404):
                        self._fatal = failure  # bad key, no access, unknown model: the same for every call
                    raise failure from exc
                wait = parse_retry_after(exc.response.headers)
                if transient >= self.config.max_retries:
                    raise _failed(transient_kind, f"{purpose}: HTTP {status} after {transient + 1} attempts: {exc.message}") from exc
                if wait is not None and wait > self.config.max_retry_after_seconds:
                    raise _failed(transient_kind, f"{purpose}: provider asks to wait {wait:.0f}s (HTTP {status})") from exc
                delay = wait if wait is not None else self._backoff(transient)
                transient += 1
                log.info("%s: HTTP %s, retry %d in %.2fs", purpose, status, transient, delay)
                if status == 429 and self.config.budget is not None:
                    # the provider's limit is the whole budget's: every process waits it out, and this
                    # call waits for its next grant (the pause) instead of sleeping alone
                    await self.config.budget.pause_async(delay, f"HTTP 429 on {purpose}")
                    continue
                await self._sleep(delay)
                continue
            except (openai.APITimeoutError, httpx2.TimeoutException, TimeoutError) as exc:
                # A timeout is its own reason: the server is up but too slow for this setting (or the
                # fill deadline passed). It is retried at most ``timeout_retries`` times, so a slow
                # server cannot multiply a fill's wall time unnoticed; usage of the cut attempt is unknown.
                meter.failed_attempts += 1
                meter.record_response(None, None)
                self._check_deadline(deadline, purpose)
                if timeouts >= self.config.timeout_retries:
                    raise _failed(
                        "provider_timeout",
                        f"{purpose}: no answer within {self.config.timeout_seconds:.0f}s of silence, "
                        f"{timeouts + 1} attempt(s) (IGNITE_LLM_TIMEOUT_SECONDS)",
                    ) from exc
                timeouts += 1
                log.info("%s: timed out (%s), retry %d", purpose, type(exc).__name__, timeouts)
                continue
            except (openai.APIConnectionError, httpx2.TransportError) as exc:
                meter.failed_attempts += 1
                if transient >= self.config.max_retries:
                    raise _failed("provider_unavailable", f"{purpose}: {type(exc).__name__} after {transient + 1} attempts") from exc
                delay = self._backoff(transient)
                transient += 1
                log.info("%s: %s, retry %d in %.2fs", purpose, type(exc).__name__, transient, delay)
                await self._sleep(delay)
                continue

            meter.record_response(answer.usage if answer.body_ok else None, answer.model)
            if answer.finish == "length":
                meter.failed_attempts += 1
                if not truncated:
                    truncated = True
                    budget = budget * 2 if ceiling is None else min(budget * 2, ceiling)
                    log.info("%s: output truncated, retrying with max_completion_tokens=%d", purpose, budget)
                    continue
                raise _failed("output_truncated", f"{purpose}: output truncated even with {budget} output tokens")
            if answer.finish == "content_filter":
                meter.failed_attempts += 1
                raise _failed("content_refused", f"{purpose}: the provider's content filter stopped the answer")
            if answer.refusal:
                meter.failed_attempts += 1
                raise _failed("content_refused", f"{purpose}: the model refused: {str(answer.refusal)[:300]}")
            content = answer.content
            try:
                if not isinstance(content, str) or not content.strip():
                    raise ValueError("no content in the answer" if answer.body_ok else "the response body is not a JSON object")
                parsed = schema.model_validate_json(content)
            except ValueError as exc:  # pydantic.ValidationError is a ValueError: malformed JSON or schema mismatch
                meter.failed_attempts += 1
                malformed += 1
                if malformed > self.config.malformed_retries:
                    raise _failed("provider_error", f"{purpose}: malformed structured output after {malformed} attempts: {_short(exc)}") from exc
                log.info("%s: malformed output (%s), retry %d", purpose, _short(exc), malformed)
                continue
            if self.cache is not None and key is not None:
                counts = answer.usage or {}
                await self.cache.put(
                    key, parsed,
                    tokens_in=int(counts.get("prompt_tokens") or 0),
                    tokens_out=int(counts.get("completion_tokens") or 0),
                    model=str(answer.model or self.config.model),
                )
            meter.last_answer_at = time.monotonic()
            return parsed


def _json_body(response: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(response.content)
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


async def run_all(calls: list[Coroutine[Any, Any, R]]) -> list[R]:
    """Run concurrently; the first GenerationFailed cancels the rest and is raised as itself."""
    tasks: list[asyncio.Task[R]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in calls]
    except BaseExceptionGroup as eg:
        failures = [e for e in _leaves(eg) if isinstance(e, GenerationFailed)]
        if failures:
            raise failures[0] from None
        raise
    return [t.result() for t in tasks]


def _leaves(eg: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out
