"""Typed inputs and outputs of the generation stages.

These names are shared with the LLM filler (``generation/llm``) and the Dagster layer, so each stage can
be called, tested and shown in the UI on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ignite_dagster.course.model import Course, Group, Level
from ignite_dagster.course.validation import Issue

if TYPE_CHECKING:
    from ignite_dagster.storage.base import ObjectStore

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


class ArithmeticMeta(BaseModel):
    """The exact arithmetic of one item; the model may phrase it, never change it."""

    op: Literal["add", "sub", "mul", "div"]
    a: int
    b: int
    expected: int | float


class SkeletonItem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    group_id: int = Field(alias="groupId")
    cluster_id: str = Field(alias="clusterId")
    variant: Literal["1", "2", "3"]
    mode: Mode
    meta: ArithmeticMeta | None = None


class StudyTextSlot(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    order: int
    title_hint: str | None = Field(default=None, alias="titleHint")
    wants_image: bool = Field(default=False, alias="wantsImage")


class Skeleton(BaseModel):
    """The structure a fill must respect: ids, groups, clusters, variants, levels, arithmetic."""

    course_id: str
    subject: str
    grade_band: str
    mode: Mode
    locale: str = "en"
    groups: list[Group]
    levels: list[Level]
    items: list[SkeletonItem]
    study_text_slots: list[StudyTextSlot] = Field(default_factory=list)
    topic: str | None = None

    def item(self, item_id: int) -> SkeletonItem | None:
        for it in self.items:
            if it.id == item_id:
                return it
        return None


class StrategyChoice(BaseModel):
    kind: StrategyKind
    pack_id: str | None = None
    reason: str


class Usage(BaseModel):
    """Model usage; added up across fill and repair rounds."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal("0")
    cache_hits: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            cost_usd=self.cost_usd + other.cost_usd,
            cache_hits=self.cache_hits + other.cache_hits,
        )

    def add(self, other: Usage) -> Usage:
        return self + other


class Telemetry(BaseModel):
    strategy: StrategyKind
    pack_id: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal("0")
    cache_hits: int = 0
    stage_ms: dict[str, int] = Field(default_factory=dict)
    repair_rounds: int = 0


class FillResult(BaseModel):
    """A draft course as JSON (possibly invalid) plus what producing it cost."""

    course: dict[str, Any]
    usage: Usage = Field(default_factory=Usage)
    provider: str | None = None
    model: str | None = None
    prompt_version: str | None = None


RETRYABLE_REASONS = frozenset({"provider_rate_limited", "provider_unavailable", "output_truncated"})
REASON_CODES = frozenset(
    {
        "invalid_request",
        "no_pack",
        "model_not_configured",
        "validation_failed",
        "content_refused",
        "provider_quota",
        "provider_rate_limited",
        "provider_unavailable",
        "output_truncated",
        "provider_error",
    }
)


class GenerationFailed(Exception):
    """A generation stage gave up; ``reason_code`` goes into the job's error, ``retryable`` to the queue."""

    def __init__(
        self,
        reason_code: str,
        message: str,
        *,
        retryable: bool | None = None,
        issues: list[Issue] | None = None,
    ):
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message
        self.retryable = reason_code in RETRYABLE_REASONS if retryable is None else retryable
        self.issues = list(issues or [])


@dataclass
class GenerationDeps:
    """What the stages need from outside; every field may be absent in a pure unit test."""

    store: ObjectStore | None = None
    debug_prefix: str | None = None
    llm: Any | None = None
    repair_rounds: int = 2
    on_stage: Callable[[str, int, str], None] | None = None


class GenerationResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    course: Course
    issues: list[Issue] = Field(default_factory=list)
    telemetry: Telemetry
    strategy: StrategyChoice
