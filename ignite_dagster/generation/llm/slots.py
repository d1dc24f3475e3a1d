"""What the model server can take: its decoding slots (llama.cpp ``/props``) and the output budget a
call may ask for within the response schema and the slot's context."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx2

from ignite_dagster.generation.llm.schemas import schema_max_tokens

log = logging.getLogger(__name__)


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
