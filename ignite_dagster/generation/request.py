"""Turning a raw job payload into a :class:`CourseRequest`, with messages a requester can act on."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ignite_dagster.generation.types import CourseRequest, GenerationFailed


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message`` for each problem, joined; no echo of huge input values (a 1 MB notes field)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err.get("loc", ())) or "request"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def parse_request(payload: CourseRequest | dict[str, Any]) -> CourseRequest:
    """Validate a payload; failures raise ``GenerationFailed("invalid_request")`` (not retryable)."""
    if isinstance(payload, CourseRequest):
        return payload
    if not isinstance(payload, dict):
        raise GenerationFailed("invalid_request", "the request payload must be a JSON object", retryable=False)
    try:
        return CourseRequest.model_validate(payload)
    except ValidationError as exc:
        raise GenerationFailed("invalid_request", describe_validation_error(exc), retryable=False) from exc
