"""Coded findings about a course: the vocabulary shared by parsing, validation and repair.

The codes are a contract: they appear in job errors, in ``validation_issues.json`` and drive the repair
loop (only item-level errors that name an item are sent back to the model). They live apart from the
checks so the course model can report schema problems without importing the validator.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

ERROR_CODES = (
    "schema_error",
    "unfilled_text",
    "invalid_blank_count",
    "invalid_options_count",
    "invalid_correct_index",
    "math_incorrect",
    "missing_answer",
    "unexpected_options",
    "unfilled_content",
    "banned_term",
    "readability",
)
# The quality gates (``course/quality.py``): errors like the rest, so a failing item is repaired and a course
# that still fails is never shipped; a job that ends on them alone fails as ``quality_failed``.
QUALITY_GATE_CODES = (
    "duplicate_options",
    "duplicate_group_names",
    "empty_group_name",
    "duplicate_item_texts",
    "off_subject",
    "numeric_answer_mismatch",
    "answer_length_giveaway",
)
ERROR_CODES = ERROR_CODES + QUALITY_GATE_CODES
WARNING_CODES = ("missing_section_markers", "reading_level_off_band")

# the same codes as a type, derived (one list): Literal of a tuple is Literal of its members
IssueCode = Literal[ERROR_CODES + WARNING_CODES]  # type: ignore[valid-type]


class Issue(BaseModel):
    """One finding: ``{code, severity, message, itemId?, field?}`` (None values are omitted)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    code: IssueCode
    severity: Literal["error", "warning"]
    message: str
    item_id: int | None = Field(default=None, alias="itemId")
    field: str | None = None

    @model_serializer(mode="plain")
    def _serialize(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "severity": self.severity, "message": self.message}
        if self.item_id is not None:
            out["itemId"] = self.item_id
        if self.field is not None:
            out["field"] = self.field
        return out
