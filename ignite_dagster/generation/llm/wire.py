"""The structured-output wire format: a pydantic model's strict JSON schema and the ``response_format``
sent with every call (Chat Completions ``json_schema``, ``strict: true``)."""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel

from ignite_dagster.generation.llm.schemas import SchemaPolicy


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


@functools.cache
def model_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """``strict_json_schema`` of a model, built once per model."""
    return strict_json_schema(schema)
