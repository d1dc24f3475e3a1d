"""Content-addressed cache of structured model answers, kept in object storage.

Why: regenerating a course with an unchanged request (a requeue after an infrastructure failure, a
re-run in development, a benchmark) should not pay for the same tokens twice, and it makes such a
re-run reproducible. Why object storage: every worker of every machine shares it, with no extra
service; the entries sit under ``courses/debug/llm-cache/`` (``storage.keys.LLM_CACHE_PREFIX``) beside the
other debugging artifacts.

The key is a sha256 over everything that determines the answer we accept: the model name, the prompt
version, a hash of the response schema (the pydantic JSON schema — a schema change invalidates old
answers) and the exact messages. The output budget is not part of the key: a complete answer is the
same answer whatever budget produced it. Only answers that parsed into the schema are stored.

A hit costs zero provider calls; the caller counts it as a cache hit. A damaged entry (unreadable or no
longer valid for the schema) is treated as a miss and overwritten by the next successful call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from ignite_dagster.storage.base import NotFound, ObjectStore, StorageError
from ignite_dagster.storage.keys import LLM_CACHE_PREFIX

log = logging.getLogger(__name__)


def cache_key(model: str, prompt_version: str, response_format: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """The content address of one structured call: model, prompt version, the exact wire schema sent
    (schemas are built per call, so a different batch size or keyword policy is a different call) and
    the messages."""
    material = {
        "model": model,
        "prompt_version": prompt_version,
        "schema": response_format,
        "messages": messages,
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A stored answer: the parsed output (as JSON data) and what producing it cost."""

    parsed: dict[str, Any]
    tokens_in: int
    tokens_out: int
    model: str


class LLMCache:
    """Read/write cache entries in an ObjectStore; blocking store calls run in a worker thread."""

    def __init__(self, store: ObjectStore, prefix: str = LLM_CACHE_PREFIX) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")

    def path(self, key: str) -> str:
        return f"{self.prefix}/{key[:2]}/{key}.json"

    async def get(self, key: str) -> CacheEntry | None:
        try:
            obj = await asyncio.to_thread(self.store.get, self.path(key))
        except NotFound:
            return None
        try:
            data = json.loads(obj.data)
            return CacheEntry(
                parsed=data["parsed"],
                tokens_in=int(data["usage"]["tokens_in"]),
                tokens_out=int(data["usage"]["tokens_out"]),
                model=str(data.get("model", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring damaged llm cache entry %s: %s", key, exc)
            return None

    async def put(self, key: str, parsed: BaseModel, *, tokens_in: int, tokens_out: int, model: str) -> None:
        """Store an answer; a storage failure is logged, never fails the generation that produced it."""
        data = {
            "key": key,
            "model": model,
            "parsed": parsed.model_dump(mode="json"),
            "usage": {"tokens_in": tokens_in, "tokens_out": tokens_out},
            "created_at": datetime.now(UTC).isoformat(),
        }
        payload = json.dumps(data, ensure_ascii=False, indent=1).encode()
        try:
            # not flushed to disk: a lost or damaged entry is a miss (see above), never a wrong answer
            await asyncio.to_thread(self.store.put, self.path(key), payload, content_type="application/json",
                                    durable=False)
        except (StorageError, OSError) as exc:
            log.warning("could not write llm cache entry %s: %s", key, exc)
