"""Typed inputs and outputs of the generation stages.

These names are shared with the LLM filler (``generation/llm``) and the course worker, so each stage can
be called, tested and shown in the UI on its own. The request and skeleton are course-format concepts and
live in ``course/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.quality import QualityThresholds
from ignite_dagster.course.request import StrategyKind
from ignite_dagster.course.skeleton import Skeleton
from ignite_dagster.queue.retry import COURSE_RETRYABLE

if TYPE_CHECKING:
    from ignite_dagster.storage.base import ObjectStore


class StrategyChoice(BaseModel):
    kind: StrategyKind
    pack_id: str | None = None
    reason: str


class Usage(BaseModel):
    """Model usage; added up across fill and repair rounds.

    ``cost_usd`` is None when some billed call had no price (unknown, never 0); a sum with an unknown
    part is unknown, since a partial sum would under-report."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal | None = Decimal("0")
    cache_hits: int = 0

    @property
    def cost_known(self) -> bool:
        return self.cost_usd is not None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            cost_usd=None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd,
            cache_hits=self.cache_hits + other.cache_hits,
        )

    def add(self, other: Usage) -> Usage:
        return self + other


class FillResult(BaseModel):
    """A draft course as JSON (possibly invalid) plus what producing it cost."""

    course: dict[str, Any]
    usage: Usage = Field(default_factory=Usage)
    # the skeleton as the plan stage named it (groups, levels, study text titles); None: unchanged
    skeleton: Skeleton | None = None
    plan: dict[str, Any] | None = None
    provider: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    # the generation's own time, first model call to last answer (None: no call, e.g. a pack or the cache)
    generation_ms: int | None = None


# Which reasons the queue retries for a course job: the one retry policy (queue/retry.py).
RETRYABLE_REASONS = COURSE_RETRYABLE
REASON_CODES = frozenset(
    {
        "invalid_request",
        "no_pack",
        "model_not_configured",
        "validation_failed",
        # every remaining error is a quality gate (course/quality.py); retryable once, see repair.py
        "quality_failed",
        "content_refused",
        "provider_quota",
        "provider_rate_limited",
        "provider_unavailable",
        "provider_timeout",
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
    # the quality gates every generated course must pass (None: structural validation only)
    quality: QualityThresholds | None = None
    # whether a quality_failed attempt may be retried (the worker allows one retry per job)
    quality_retryable: bool = True
    # a fill's progress (done calls, total calls, message) and whether it may use the answer cache
    on_progress: Callable[[int, int, str], None] | None = None
    use_cache: bool = True
