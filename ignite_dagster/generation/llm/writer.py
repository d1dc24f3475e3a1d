"""Skeleton + LLM: the model writes the content, the skeleton keeps the structure and the arithmetic.

``ModelWriter`` is the object the fill and repair stages hold as ``deps.llm``: ``await fill(skeleton, request)``
returns the draft course, ``await repair(course, issues, skeleton, request)`` rewrites failing items.

Call plan of one fill (``ModelWriter.plan``), bounded by the client's concurrency (``llm_concurrency``,
capped by the slots the server reports):

* a course without a pack first makes one *plan* call (skill-named groups, one objective per cluster,
  level and study-text titles, which study text each group practises); everything after is written
  from the plan, and each item points at the study text its group practises;
* a course whose structure a pack named makes one *overview* call (title, description) instead,
  concurrently with the rest;
* one call per study-text slot,
* one call per batch of at most ``items_per_call`` items of one group.

Every call's response schema is built from the skeleton (``schemas``): exact counts, one blank, option
count and index range, length bounds. Answers map onto skeleton items by position.

``fill_many`` fills several courses in one event loop with one client: their calls overlap under one
concurrency limit, so the courses of a run take about as long as the longest, not the sum.

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

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ignite_dagster.config import ConfigError, Settings
from ignite_dagster.course.issues import Issue
from ignite_dagster.course.quality import normalized
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton, SkeletonItem, StudyTextSlot
from ignite_dagster.generation.llm.cache import LLMCache, fill_key
from ignite_dagster.generation.llm.client import PROVIDER_NAME, ProviderConfig, StructuredClient, run_all
from ignite_dagster.generation.llm.item_repair import repair_items
from ignite_dagster.generation.llm.meter import UsageMeter
from ignite_dagster.generation.llm.prompts import (
    PROMPT_VERSION,
    item_batch_messages,
    overview_messages,
    plan_messages,
    study_text_messages,
)
from ignite_dagster.generation.llm.schemas import (
    CourseOverview,
    CoursePlan,
    FilledItem,
    ItemBatch,
    StudyTextOut,
    clusters_of,
    item_batch_schema,
    overview_schema,
    plan_schema,
    study_text_content,
    study_text_schema,
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

    kind: str  # "plan" | "overview" | "study_text" | "items"
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


async def _done(value: Any) -> Any:
    return value


OnProgress = Callable[[int, int, str], None]
_KIND_LABELS = {"plan": "plan", "overview": "overview", "study_text": "study texts", "items": "items"}


class FillProgress:
    """Counts a fill's finished calls and reports them (``fill_with``'s ``on_progress``).

    Items are counted by item, the rest by call: "plan 1/1, study texts 1/2, items 5/12". A report
    that fails is logged and forgotten: progress never fails a fill."""

    def __init__(self, calls: list[PlannedCall], on_progress: OnProgress | None, *, on_loop: bool = False) -> None:
        self.on_progress = on_progress
        self.on_loop = on_loop  # on_progress never blocks: called here, not in a thread
        self.total_calls = len(calls)
        self.done_calls = 0
        self.totals: dict[str, int] = {}
        for call in calls:
            self.totals[call.kind] = self.totals.get(call.kind, 0) + (len(call.item_ids) if call.kind == "items" else 1)
        self.done: dict[str, int] = dict.fromkeys(self.totals, 0)

    def message(self) -> str:
        return ", ".join(f"{_KIND_LABELS[k]} {self.done[k]}/{n}" for k, n in self.totals.items())

    async def finished(self, call: PlannedCall) -> None:
        self.done_calls += 1
        self.done[call.kind] = self.done.get(call.kind, 0) + (len(call.item_ids) if call.kind == "items" else 1)
        if self.on_progress is None:
            return
        try:
            if self.on_loop:
                self.on_progress(self.done_calls, self.total_calls, self.message())
            else:
                await asyncio.to_thread(self.on_progress, self.done_calls, self.total_calls, self.message())
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            log.warning("fill progress not reported: %s", exc)

    async def track(self, call: PlannedCall, coro: Awaitable[Any]) -> Any:
        result = await coro
        await self.finished(call)
        return result


def apply_plan(skeleton: Skeleton, plan: CoursePlan) -> Skeleton:
    """The skeleton with the plan's names: groups by skill, level titles, study text titles.

    Only names change; ids, counts, clusters and items stay the skeleton's. A name the plan left out
    keeps the skeleton's placeholder (the validator does not judge names; an operator sees them).
    """
    groups = []
    taken: set[str] = set()
    for n, g in enumerate(skeleton.groups):
        name = group_name(plan.groups[n], taken) if n < len(plan.groups) else None
        groups.append(g.model_copy(update={"name": _clip(name, 60)}) if name else g)
        taken.add(normalized(groups[-1].name))
    levels = [
        lv.model_copy(update={"title": _clip(plan.levels[n], 60)}) if n < len(plan.levels) and plan.levels[n].strip() else lv
        for n, lv in enumerate(skeleton.levels)
    ]
    slots = [
        s.model_copy(update={"title_hint": _clip(plan.studyTexts[n], STUDY_TITLE_MAX)})
        if n < len(plan.studyTexts) and plan.studyTexts[n].strip() else s
        for n, s in enumerate(sorted(skeleton.study_text_slots, key=lambda s: s.order))
    ]
    return skeleton.model_copy(update={"groups": groups, "levels": levels, "study_text_slots": slots})


_PLACEHOLDER_NAME = re.compile(r"(?:part|group|section|unit|level|topic|skill)\s*[0-9]+[.:]?", re.IGNORECASE)
_NUMBERING = re.compile(r"^\s*[0-9]+[.):]\s*")


def group_name(group, taken: set[str] | None = None) -> str | None:
    """The plan's name for a group, or, when the model wrote a numbered placeholder ("Part 1", "Group 2")
    or a name an earlier group already has, its first objective that is still free (the model's own
    words for that skill, numbering removed).

    Measured on SmolLM2-135M: asked for a skill name, it sometimes answers "Part 1", "Part 2", ... and
    often gives every group the course's subject ("The Solar System" ×3) — names that tell a teacher
    nothing; its objectives for the same group do name the skill. A name that stays repeated is caught
    by the ``duplicate_group_names`` quality gate."""
    taken = taken or set()
    name = " ".join((group.name or "").split())
    if name and not _PLACEHOLDER_NAME.fullmatch(name) and normalized(name) not in taken:
        return name
    for objective in group.objectives:
        text = _NUMBERING.sub("", " ".join(objective.split()))
        if text and normalized(_clip(text, 60)) not in taken:
            return text
    # nothing better: a placeholder gives way to the skeleton's own; a repeated name stays (the gate sees it)
    return name if name and not _PLACEHOLDER_NAME.fullmatch(name) else None


def cluster_objectives(skeleton: Skeleton, plan: CoursePlan | None) -> dict[str, str]:
    """Cluster id → the objective the plan gave it (positional within each group)."""
    if plan is None:
        return {}
    out: dict[str, str] = {}
    for n, group in enumerate(skeleton.groups):
        objectives = plan.groups[n].objectives if n < len(plan.groups) else []
        for cluster, objective in zip(clusters_of(skeleton, group.id), objectives, strict=False):
            if objective.strip():
                out[cluster] = objective.strip()
    return out


def group_study_texts(skeleton: Skeleton, plan: CoursePlan | None) -> dict[int, str]:
    """Group id → the id of the study text its items practise.

    From the plan's 1-based ``studyText`` numbers; a group the plan did not map (or a course with a
    pack's structure) is spread over the study texts in order, so every item of a planned course
    points at an existing study text."""
    slots = sorted(skeleton.study_text_slots, key=lambda s: s.order)
    if not slots or plan is None:
        return {}
    out: dict[int, str] = {}
    for n, group in enumerate(skeleton.groups):
        number = plan.groups[n].studyText if n < len(plan.groups) else None
        index = number - 1 if isinstance(number, int) and 1 <= number <= len(slots) else n % len(slots)
        out[group.id] = slots[index].id
    return out


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


class ModelWriter:
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
        """The calls one fill makes: the plan (or overview), then study texts and item batches."""
        calls = [PlannedCall("plan" if skeleton.needs_plan else "overview")]
        calls += [PlannedCall("study_text", slot_id=s.id) for s in sorted(skeleton.study_text_slots, key=lambda s: s.order)]
        for group in skeleton.groups:
            items = [it for it in skeleton.items if it.group_id == group.id]
            for start in range(0, len(items), self.items_per_call):
                chunk = items[start : start + self.items_per_call]
                calls.append(PlannedCall("items", group_id=group.id, item_ids=tuple(i.id for i in chunk)))
        return calls

    # -- fill -----------------------------------------------------------------------------------
    async def fill(self, skeleton: Skeleton, request: CourseRequest, *, on_progress: OnProgress | None = None,
                   use_cache: bool = True) -> LLMFillResult:
        """Write the whole draft course; see the module docstring for the call plan and failures."""
        async with self.client(self.config()) as client:
            return await self.fill_with(client, skeleton, request, on_progress=on_progress, use_cache=use_cache)

    async def fill_many(
        self, courses: list[tuple[Skeleton, CourseRequest]]
    ) -> list[LLMFillResult | GenerationFailed]:
        """Fill several courses side by side (one client, one concurrency limit); a course's coded
        failure is returned in its place and never stops the others."""
        config = self.config()
        async with self.client(config) as client:
            tasks = [self.fill_with(client, skeleton, request) for skeleton, request in courses]
            results = await asyncio.gather(*tasks, return_exceptions=True)
        out: list[LLMFillResult | GenerationFailed] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, GenerationFailed):
                raise result
            out.append(result)
        return out

    async def fill_with(self, client: StructuredClient, skeleton: Skeleton, request: CourseRequest, *,
                        on_progress: OnProgress | None = None, use_cache: bool = True,
                        progress_on_loop: bool = False) -> LLMFillResult:
        """One course filled through an open client (shared with other courses: see ``background``).

        ``on_progress(done, total, message)`` is called (in a thread: it may write to the database) each
        time one of the fill's calls has answered, e.g. ``(4, 7, "plan 1/1, study texts 2/2, items
        4/12")``; with ``progress_on_loop`` it never blocks (it records the figure for a writer of its own)
        and is called on the event loop, saving a thread hop per answer. ``use_cache=False`` asks the
        model afresh (a retry after ``quality_failed``: the cached answers are the ones that failed)."""
        meter = client.new_meter()
        deadline = client.new_deadline()
        by_id = {it.id: it for it in skeleton.items}
        plan: CoursePlan | None = None
        progress = FillProgress(self.plan(skeleton), on_progress, on_loop=progress_on_loop)
        # the fill's answers in one cache object (see cache); saved however the fill ends
        stored = await client.fill_cache(self._fill_key(client, skeleton, request)) if use_cache else None
        try:
            if skeleton.needs_plan:
                plan = await client.parse(
                    plan_messages(skeleton, request), CoursePlan, json_schema=plan_schema(skeleton),
                    schema_name="CoursePlan", meter=meter, prompt_version=PROMPT_VERSION,
                    purpose=f"{skeleton.course_id}: plan", deadline=deadline, use_cache=use_cache, cache=stored,
                )
                await progress.finished(PlannedCall("plan"))
                skeleton = apply_plan(skeleton, plan)
            objectives = cluster_objectives(skeleton, plan)
            group_texts = group_study_texts(skeleton, plan)
            slot_titles = {s.id: s.title_hint for s in skeleton.study_text_slots}
            names = {g.id: g.name for g in skeleton.groups}
            calls = self.plan(skeleton)

            async def overview() -> CourseOverview:
                return await client.parse(
                    overview_messages(skeleton, request), CourseOverview, json_schema=overview_schema(),
                    schema_name="CourseOverview", meter=meter, prompt_version=PROMPT_VERSION,
                    purpose=f"{skeleton.course_id}: overview", deadline=deadline, use_cache=use_cache, cache=stored,
                )

            async def study_text(slot: StudyTextSlot) -> StudyTextOut:
                skills = [objectives[c] for g, sid in group_texts.items() if sid == slot.id
                          for c in clusters_of(skeleton, g) if c in objectives]
                others = [t for i, t in slot_titles.items() if i != slot.id and t]
                return await client.parse(
                    study_text_messages(skeleton, request, slot, title=slot.title_hint, skills=skills or None,
                                        other_titles=others or None),
                    StudyTextOut, json_schema=study_text_schema(slot.wants_image), schema_name="StudyTextOut",
                    meter=meter, prompt_version=PROMPT_VERSION, purpose=f"{skeleton.course_id}: study text {slot.id}",
                    deadline=deadline, use_cache=use_cache, cache=stored,
                )

            async def items(group_id: int, batch: list[SkeletonItem]) -> ItemBatch:
                text_id = group_texts.get(group_id)
                return await client.parse(
                    item_batch_messages(skeleton, request, names.get(group_id, str(group_id)), batch, objectives,
                                        slot_titles.get(text_id) if text_id else None),
                    ItemBatch, json_schema=item_batch_schema(skeleton.mode, len(batch)), schema_name="ItemBatch",
                    meter=meter, prompt_version=PROMPT_VERSION, deadline=deadline, use_cache=use_cache, cache=stored,
                    purpose=f"{skeleton.course_id}: items {batch[0].id}-{batch[-1].id} of group {group_id}",
                )

            slots = {s.id: s for s in skeleton.study_text_slots}
            coros: list[Coroutine[Any, Any, Any]] = []
            for call in calls:
                if call.kind == "overview":
                    coros.append(progress.track(call, overview()))
                elif call.kind == "plan":
                    coros.append(_done(plan))
                elif call.kind == "study_text":
                    assert call.slot_id is not None
                    coros.append(progress.track(call, study_text(slots[call.slot_id])))
                else:
                    assert call.group_id is not None
                    coros.append(progress.track(call, items(call.group_id, [by_id[i] for i in call.item_ids])))
            answers = await run_all(coros)
        except GenerationFailed as exc:
            exc.usage = to_usage(meter)[0]  # type: ignore[attr-defined]
            raise
        finally:
            if stored is not None:
                stored.save()
        course = self._assemble(skeleton, calls, answers, group_texts)
        result = self._result(course, meter)
        if plan is not None:
            result.skeleton = skeleton
            result.plan = plan.model_dump()
        return result

    @staticmethod
    def _fill_key(client: StructuredClient, skeleton: Skeleton, request: CourseRequest) -> str:
        return fill_key(client.config.model, PROMPT_VERSION, skeleton.model_dump(mode="json"),
                        request.model_dump(mode="json"))

    def _assemble(
        self, skeleton: Skeleton, plan: list[PlannedCall], answers: list[Any], group_texts: dict[int, str]
    ) -> dict[str, Any]:
        filled: dict[int, FilledItem] = {}
        overview: CourseOverview | CoursePlan | None = None
        study_texts: list[dict[str, Any]] = []
        slots = {s.id: s for s in skeleton.study_text_slots}
        for call, answer in zip(plan, answers, strict=True):
            if call.kind in ("overview", "plan"):
                overview = answer
            elif call.kind == "study_text":
                assert call.slot_id is not None
                study_texts.append(self._study_text(slots[call.slot_id], answer))
            else:
                # Position is identity: the n-th answer is the n-th item sent. A server that ignored
                # the schema's exact count leaves no way to tell which answer is whose: the whole batch
                # stays unfilled and the repair stage writes it (every failing item is repaired).
                if len(answer.items) == len(call.item_ids):
                    filled.update(zip(call.item_ids, answer.items, strict=True))
                else:
                    log.warning("model answered %d items for the %d of group %s; the batch goes to repair",
                                len(answer.items), len(call.item_ids), call.group_id)
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
            "items": [
                to_course_item(sk, filled.get(sk.id), [group_texts[sk.group_id]] if sk.group_id in group_texts else [])
                for sk in skeleton.items
            ],
        }
        if study_texts:
            course["studyTexts"] = sorted(study_texts, key=lambda s: s["order"])
        return course

    @staticmethod
    def _study_text(slot: StudyTextSlot, out: StudyTextOut) -> dict[str, Any]:
        text: dict[str, Any] = {
            "id": slot.id,
            # a blank title gives way to the plan's title for this slot (the model's own words, not ours)
            "title": _clip(out.title, STUDY_TITLE_MAX) or _clip(slot.title_hint or "", STUDY_TITLE_MAX),
            "content": study_text_content(out, slot.wants_image),
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
            generation_ms=meter.generation_ms(),
        )

    # -- repair ---------------------------------------------------------------------------------
    async def repair(
        self, course: dict[str, Any], issues: list[Issue], skeleton: Skeleton, request: CourseRequest
    ) -> LLMFillResult:
        """One repair round: the full course with the failing items replaced (see ``item_repair``)."""
        config = self.config()
        async with self.client(config) as client:
            meter = client.new_meter()
            try:
                repaired = await repair_items(
                    client, meter, course, issues, skeleton, request, items_per_call=self.repair_items_per_call,
                    deadline=client.new_deadline(),
                )
            except GenerationFailed as exc:
                exc.usage = to_usage(meter)[0]  # type: ignore[attr-defined]
                raise
        return self._result(repaired, meter)


