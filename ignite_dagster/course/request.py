"""The course request: the one definition of what a requester may ask for.

Its fields drive the HTTP schema, the job row, the worker's rebuild and the idempotency comparison;
everything else derives from this model, so a field added here cannot silently fall through.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Mode = Literal["options", "numeric"]
StrategyKind = Literal["deterministic", "llm"]

NOTES_MAX = 20_000
STUDY_TEXT_MAX = 50_000

_BAND_RE = re.compile(r"^(K|\d{1,2})-(\d{1,2})$")
_GRADE_RE = re.compile(r"^(?:grade\s*)?(K|\d{1,2})$", re.IGNORECASE)


def grade_number(grade: str) -> int:
    """``"K"`` → 0, ``"7"`` → 7."""
    return 0 if grade.upper() == "K" else int(grade)


def band_for_grade(grade: str) -> str:
    """The conventional US grade band a single grade belongs to."""
    n = grade_number(grade)
    if n <= 2:
        return "K-2"
    if n <= 5:
        return "3-5"
    if n <= 8:
        return "6-8"
    return "9-12"


def band_range(band: str) -> tuple[int, int]:
    """``"3-5"`` → (3, 5); ``"K-2"`` → (0, 2)."""
    low, high = band.split("-")
    return grade_number(low), grade_number(high)


class CourseRequest(BaseModel):
    """A validated ``ai_course_generate`` payload; bad input fails here with a message naming the field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    course_id: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    subject: str = Field(min_length=1, max_length=200)
    grade_band: str | None = None
    grade: str | None = None
    items_per_group: int = Field(default=12, ge=1, le=100)
    mode: Mode = "options"
    notes: str | None = Field(default=None, max_length=NOTES_MAX)
    study_text: str | None = Field(default=None, max_length=STUDY_TEXT_MAX)
    levels_count: int | None = Field(default=None, ge=1, le=20)
    study_texts_count: int | None = Field(default=None, ge=0, le=20)
    groups_count: int | None = Field(default=None, ge=1, le=12)
    wants_images: bool = False
    strategy: StrategyKind | None = None
    locale: str = Field(default="en", min_length=2, max_length=16)

    @field_validator("grade_band", mode="before")
    @classmethod
    def _normalise_band(cls, value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        text = value.strip().replace("\u2013", "-").replace("\u2014", "-").replace(" ", "").upper()
        if not text:
            return None
        m = _BAND_RE.match(text)
        if not m:
            raise ValueError(f"grade_band must look like 'K-2', '3-5' or '6-8', got {value!r}")
        low, high = grade_number(m.group(1)), grade_number(m.group(2))
        if high > 12 or low > high:
            raise ValueError(f"grade_band {value!r} is not a range of grades K..12")
        return text

    @field_validator("grade", mode="before")
    @classmethod
    def _normalise_grade(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None or not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return None
        m = _GRADE_RE.match(text)
        if not m or (m.group(1).upper() != "K" and int(m.group(1)) > 12):
            raise ValueError(f"grade must be 'K' or a number 1..12, got {value!r}")
        return m.group(1).upper() if m.group(1).upper() == "K" else str(int(m.group(1)))

    @field_validator("notes", "study_text", mode="after")
    @classmethod
    def _empty_to_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _band_or_grade(self) -> CourseRequest:
        if self.grade_band is None and self.grade is None:
            raise ValueError("one of grade_band (e.g. '3-5') or grade (e.g. '4') is required")
        if self.grade_band is None and self.grade is not None:
            self.grade_band = band_for_grade(self.grade)
        return self

    @property
    def band(self) -> str:
        """The grade band, always set after validation."""
        assert self.grade_band is not None
        return self.grade_band


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message`` for each problem, joined; no echo of huge input values (a 1 MB notes field)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err.get("loc", ())) or "request"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
