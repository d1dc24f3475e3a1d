"""Course v2, the JSON document stored at ``courses/<courseId>/course.json``.

The model is deliberately *permissive*: it checks JSON types and required fields only, so a model's
draft with content problems (wrong blank count, three options too many, a bad correctIndex) still loads.
Those problems are reported as structured, coded issues by :mod:`ignite_dagster.course.validation`,
which is what the repair loop and job errors need; a pydantic exception would only say "invalid".

JSON names are camelCase as in the spec; Python attributes are snake_case (``item.group_id``) and both
spellings are accepted on input. ``extra="allow"`` everywhere so fields this code does not know yet
(media, frontend additions) survive a load/save round trip.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from ignite_dagster.course.issues import Issue


class _CourseModel(BaseModel):
    """Shared config: camelCase aliases, snake_case attributes, unknown fields preserved."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Group(_CourseModel):
    id: int
    name: str
    color: str | None = None


class Level(_CourseModel):
    id: int
    title: str
    start: int
    end: int
    description: str | None = None
    min_score: float | None = None


class StudyTextMetadata(_CourseModel):
    difficulty: str | None = None
    estimated_reading_time: int | None = None
    keywords: list[str] | None = None


class StudyText(_CourseModel):
    id: str
    title: str
    content: str
    order: int
    learning_objectives: list[str] | None = None
    metadata: StudyTextMetadata | None = None


class Stimulus(_CourseModel):
    type: str
    url: str
    alt: str | None = None
    placement: str | None = None


class Item(_CourseModel):
    id: int
    text: str
    group_id: int
    cluster_id: str
    variant: str
    mode: str
    options: list[str] | None = None
    correct_index: int | None = None
    answer: int | float | None = None
    hint: str | None = None
    explain: str | None = None
    wrong_explanations: list[str] | None = None
    related_study_text_ids: list[str] | None = None
    learning_objective_id: str | None = None
    stimulus: Stimulus | None = None
    option_media: list[dict[str, Any] | None] | None = None

    @field_validator("cluster_id", "variant", mode="before")
    @classmethod
    def _int_to_str(cls, value: Any) -> Any:
        """Models often emit ``"variant": 1``; the spec's type is a string, the meaning is the same."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class GenerationInfo(_CourseModel):
    """Which job wrote this file — the reconciler compares it with the job row."""

    job_id: str | None = None
    attempt: int = 0
    strategy: str
    provider: str | None = None
    model: str | None = None
    pack_id: str | None = None
    prompt_version: str | None = None
    created_at: str


class Course(_CourseModel):
    id: str
    title: str
    subject: str
    grade_band: str
    locale: str = "en"
    description: str | None = None
    content_version: str = "1"
    groups: list[Group]
    levels: list[Level]
    items: list[Item]
    study_texts: list[StudyText] | None = None
    generation: GenerationInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict with camelCase keys and absent optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json_bytes(self) -> bytes:
        """Deterministic bytes (sorted keys, UTF-8, indent 2): equal courses give equal files and hashes."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2, sort_keys=True)
        return (text + "\n").encode("utf-8")


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def parse_course(data: Any) -> tuple[Course | None, list[Issue]]:
    """Load a draft; type errors become ``schema_error`` issues (naming the item when there is one).

    Returns ``(None, issues)`` when the draft cannot be loaded at all, so callers (repair, asset
    checks) work with the same structured issues as for content problems.
    """
    if not isinstance(data, dict):
        return None, [Issue(code="schema_error", severity="error", message="course must be a JSON object")]
    try:
        return Course.model_validate(data), []
    except ValidationError as exc:
        issues: list[Issue] = []
        raw_items = data.get("items") if isinstance(data.get("items"), list) else []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            item_id: int | None = None
            if len(loc) >= 2 and loc[0] == "items" and isinstance(loc[1], int) and loc[1] < len(raw_items):
                raw = raw_items[loc[1]]
                if isinstance(raw, dict) and isinstance(raw.get("id"), int):
                    item_id = raw["id"]
            field = _loc_to_field(loc)
            issues.append(
                Issue(
                    code="schema_error",
                    severity="error",
                    message=f"{field or 'course'}: {err.get('msg', 'invalid')}",
                    item_id=item_id,
                    field=field or None,
                )
            )
        return None, issues
