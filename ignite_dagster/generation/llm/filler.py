"""Skeleton + LLM: the model writes the content, the skeleton keeps the structure and the arithmetic.

``LLMFiller`` is the object the fill and repair stages hold as ``deps.llm``: ``await fill(skeleton, request)``
returns the draft course, ``await repair(course, issues, skeleton, request)`` rewrites failing items.

Call plan of one fill (``LLMFiller.plan``), all started at once and bounded by ``llm_concurrency``:

* one *overview* call (title, description),
* one call per study-text slot,
* one call per batch of at most ``items_per_call`` items of one group.

Why batches per group: a group's items share a theme, so one call writes them consistently, while
several groups (and large groups, split) proceed in parallel — the fill's wall time is about
``ceil(calls / concurrency)`` call latencies rather than the sum. Why not one call for the whole course:
output budgets, and a truncated or refused answer would cost everything instead of one batch.

Failure: the first coded failure of any call (``GenerationFailed``) cancels the others and is raised,
carrying what was spent so far as ``exc.usage`` (a ``Usage``; failed attempts are billed too).

Cache: with a store, fill answers are cached by content (see ``cache``), so the same request again
(a rerun after an infrastructure failure) costs no provider call. A requeue after ``validation_failed``
therefore gets the same draft back; the repair calls are never cached, so repair gets fresh answers.
Pass ``use_cache=False`` to always ask the model.

Course-level text the model writes (title, description, study-text titles) is shortened to the
format's hard limits at a word boundary: nothing is added, and an over-long title is not worth a
failed job (there is no item-level repair for it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ignite_dagster.config import ConfigError, Settings
from ignite_dagster.course.issues import Issue
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton, SkeletonItem, StudyTextSlot
from ignite_dagster.generation.llm.cache import LLMCache
from ignite_dagster.generation.llm.prompts import (
    PROMPT_VERSION,
    item_batch_messages,
    overview_messages,
    study_text_messages,
)
from ignite_dagster.generation.llm.provider import (
    PROVIDER_NAME,
    ProviderConfig,
    StructuredClient,
    UsageMeter,
    run_all,
)
from ignite_dagster.generation.llm.repairer import repair_items
from ignite_dagster.generation.llm.schemas import (
    CourseOverview,
    FilledItem,
    ItemBatch,
    StudyTextOut,
    to_course_item,
)
from ignite_dagster.generation.types import FillResult, GenerationFailed, Usage
from ignite_dagster.storage.base import ObjectStore

log = logging.getLogger(__name__)

TITLE_MAX = 120
DESCRIPTION_MAX = 500
STUDY_TITLE_MAX = 200


@dataclass(frozen=True)
class PlannedCall:
    """One model call of a fill: what it writes."""

    kind: str  # "overview" | "study_text" | "items"
    group_id: int | None = None
    item_ids: tuple[int, ...] = ()
    slot_id: str | None = None


class LLMFillResult(FillResult):
    """FillResult plus what ``Usage`` cannot express: whether the cost is complete.

    ``Usage.cost_usd`` is a plain Decimal; when some billed attempt had no price (model missing from
    ``IGNITE_LLM_PRICES``, or no usage in the response) ``cost_usd`` holds only the priced part,
    ``cost_known`` is False and ``unpriced_models`` names the models to add to the table.
    """

    cost_known: bool = True
    unpriced_models: list[str] = []
    failed_attempts: int = 0  # of usage.calls, how many attempts failed (429, 5xx, truncated, malformed …)


def _clip(text: str, limit: int) -> str:
    """Shorten model text to a hard field limit at a word boundary (no characters added)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:-")


def to_usage(meter: UsageMeter) -> tuple[Usage, bool]:
    """The shared Usage and whether its cost is complete (see LLMFillResult)."""
    base = {
        "calls": meter.calls,
        "tokens_in": meter.tokens_in,
        "tokens_out": meter.tokens_out,
        "cache_hits": meter.cache_hits,
    }
    if meter.cost_usd is not None:
        return Usage(cost_usd=meter.cost_usd, **base), True
    try:  # if Usage ever accepts "unknown", say so
        return Usage(cost_usd=None, **base), False  # type: ignore[arg-type]
    except ValidationError:
        log.warning(
            "cost of model %s is unknown (no price in IGNITE_LLM_PRICES or no usage reported); "
            "cost_usd reports the priced part only", meter.model,
        )
        return Usage(cost_usd=meter.priced_cost_usd, **base), False


class LLMFiller:
    """Fill and repair through an OpenAI-compatible model; see the module docstring.

    ``store``: object storage for the content-addressed answer cache (None: no cache).
    ``sleep``: the backoff sleep (tests pass a recorder that does not really sleep).
    ``config_overrides``: ProviderConfig fields to override (backoff bounds, malformed retries …).
    """

    provider = PROVIDER_NAME
    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore | None = None,
        *,
        items_per_call: int = 12,
        repair_items_per_call: int = 5,
        use_cache: bool = True,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **config_overrides: Any,
    ) -> None:
        if items_per_call < 1 or repair_items_per_call < 1:
            raise ValueError("items_per_call and repair_items_per_call must be at least 1")
        self.settings = settings
        self.store = store
        self.items_per_call = items_per_call
        self.repair_items_per_call = repair_items_per_call
        self.use_cache = use_cache
        self._sleep = sleep
        self._overrides = config_overrides

    # -- configuration --------------------------------------------------------------------------
    def config(self) -> ProviderConfig:
        """The provider config; a missing model is ``model_not_configured``, never a silent fallback."""
        try:
            return ProviderConfig.from_settings(self.settings, **self._overrides)
        except ConfigError as exc:
            raise GenerationFailed("model_not_configured", str(exc), retryable=False) from exc

    @property
    def model(self) -> str | None:
        return self._overrides.get("model") or self.settings.text_model

    def client(self, config: ProviderConfig | None = None) -> StructuredClient:
        """A client for one event loop (use with ``async with``)."""
        cache = LLMCache(self.store) if self.store is not None and self.use_cache else None
        return StructuredClient(config or self.config(), cache=cache, sleep=self._sleep)

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, skeleton: Skeleton) -> list[PlannedCall]:
        """The calls one fill makes (all concurrent, bounded by the concurrency limit)."""
        calls = [PlannedCall("overview")]
        calls += [PlannedCall("study_text", slot_id=s.id) for s in sorted(skeleton.study_text_slots, key=lambda s: s.order)]
        for group in skeleton.groups:
            items = [it for it in skeleton.items if it.group_id == group.id]
            for start in range(0, len(items), self.items_per_call):
                chunk = items[start : start + self.items_per_call]
                calls.append(PlannedCall("items", group_id=group.id, item_ids=tuple(i.id for i in chunk)))
        return calls

    # -- fill -----------------------------------------------------------------------------------
    async def fill(self, skeleton: Skeleton, request: CourseRequest) -> LLMFillResult:
        """Write the whole draft course; see the module docstring for the call plan and failures."""
        config = self.config()
        plan = self.plan(skeleton)
        by_id = {it.id: it for it in skeleton.items}
        slots = {s.id: s for s in skeleton.study_text_slots}
        group_names = {g.id: g.name for g in skeleton.groups}
        async with self.client(config) as client:
            meter = client.new_meter()

            async def overview() -> CourseOverview:
                return await client.parse(
                    overview_messages(skeleton, request), CourseOverview,
                    meter=meter, prompt_version=PROMPT_VERSION, purpose="overview",
                )

            async def study_text(slot: StudyTextSlot) -> StudyTextOut:
                return await client.parse(
                    study_text_messages(skeleton, request, slot), StudyTextOut,
                    meter=meter, prompt_version=PROMPT_VERSION, purpose=f"study text {slot.id}",
                )

            async def items(group_id: int, batch: list[SkeletonItem]) -> ItemBatch:
                return await client.parse(
                    item_batch_messages(skeleton, request, group_names.get(group_id, str(group_id)), batch),
                    ItemBatch, meter=meter, prompt_version=PROMPT_VERSION,
                    purpose=f"items {batch[0].id}-{batch[-1].id} of group {group_id}",
                )

            coros: list[Coroutine[Any, Any, Any]] = []
            for call in plan:
                if call.kind == "overview":
                    coros.append(overview())
                elif call.kind == "study_text":
                    assert call.slot_id is not None
                    coros.append(study_text(slots[call.slot_id]))
                else:
                    assert call.group_id is not None
                    coros.append(items(call.group_id, [by_id[i] for i in call.item_ids]))
            try:
                answers = await run_all(coros)
            except GenerationFailed as exc:
                exc.usage = to_usage(meter)[0]  # type: ignore[attr-defined]
                raise

        course = self._assemble(skeleton, plan, answers)
        return self._result(course, meter)

    def _assemble(self, skeleton: Skeleton, plan: list[PlannedCall], answers: list[Any]) -> dict[str, Any]:
        slot_ids = {s.id for s in skeleton.study_text_slots}
        filled: dict[int, FilledItem] = {}
        overview: CourseOverview | None = None
        study_texts: list[dict[str, Any]] = []
        slots = {s.id: s for s in skeleton.study_text_slots}
        for call, answer in zip(plan, answers, strict=True):
            if call.kind == "overview":
                overview = answer
            elif call.kind == "study_text":
                assert call.slot_id is not None
                study_texts.append(self._study_text(slots[call.slot_id], answer))
            else:
                wanted = set(call.item_ids)
                for it in answer.items:
                    if it.id in wanted and it.id not in filled:
                        filled[it.id] = it
                missing = wanted - {i.id for i in answer.items}
                if missing:
                    log.warning("model left out items %s of group %s; they stay unfilled", sorted(missing), call.group_id)
        assert overview is not None
        course: dict[str, Any] = {
            "id": skeleton.course_id,
            "title": _clip(overview.title, TITLE_MAX),
            "subject": skeleton.subject,
            "gradeBand": skeleton.grade_band,
            "locale": skeleton.locale,
            "description": _clip(overview.description, DESCRIPTION_MAX),
            "groups": [g.model_dump(mode="json", by_alias=True, exclude_none=True) for g in skeleton.groups],
            "levels": [lv.model_dump(mode="json", by_alias=True, exclude_none=True) for lv in skeleton.levels],
            "items": [to_course_item(sk, filled.get(sk.id), slot_ids) for sk in skeleton.items],
        }
        if study_texts:
            course["studyTexts"] = sorted(study_texts, key=lambda s: s["order"])
        return course

    @staticmethod
    def _study_text(slot: StudyTextSlot, out: StudyTextOut) -> dict[str, Any]:
        if slot.wants_image and "[IMAGE:" not in out.content:
            log.warning("study text %s wants an image but the model wrote no [IMAGE:…] marker", slot.id)
        if not slot.wants_image and "[IMAGE:" in out.content:
            log.info("study text %s has [IMAGE:…] markers although no image was asked for", slot.id)
        text: dict[str, Any] = {
            "id": slot.id,
            "title": _clip(out.title, STUDY_TITLE_MAX),
            "content": out.content.strip(),
            "order": slot.order,
        }
        if out.learningObjectives:
            text["learningObjectives"] = list(out.learningObjectives)
        text["metadata"] = {
            "difficulty": out.difficulty,
            "estimatedReadingTime": out.estimatedReadingTime,
            "keywords": list(out.keywords),
        }
        return text

    def _result(self, course: dict[str, Any], meter: UsageMeter) -> LLMFillResult:
        usage, cost_known = to_usage(meter)
        return LLMFillResult(
            course=course,
            usage=usage,
            provider=PROVIDER_NAME,
            model=meter.model,
            prompt_version=PROMPT_VERSION,
            cost_known=cost_known,
            unpriced_models=sorted(meter.unpriced_models),
            failed_attempts=meter.failed_attempts,
        )

    # -- repair ---------------------------------------------------------------------------------
    async def repair(
        self, course: dict[str, Any], issues: list[Issue], skeleton: Skeleton, request: CourseRequest
    ) -> LLMFillResult:
        """One repair round: the full course with the failing items replaced (see ``repairer``)."""
        config = self.config()
        async with self.client(config) as client:
            meter = client.new_meter()
            try:
                repaired = await repair_items(
                    client, meter, course, issues, skeleton, request, items_per_call=self.repair_items_per_call
                )
            except GenerationFailed as exc:
                exc.usage = to_usage(meter)[0]  # type: ignore[attr-defined]
                raise
        return self._result(repaired, meter)


