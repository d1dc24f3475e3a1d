"""The fill stage: compile the pack (deterministic) or ask the model (llm) for the draft course."""

from __future__ import annotations

from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.skeleton import Skeleton
from ignite_dagster.generation.deterministic import compile_pack
from ignite_dagster.generation.packs import ArithmeticPack, KnowledgePack
from ignite_dagster.generation.stages.select_strategy import MODEL_SETTINGS_HINT
from ignite_dagster.generation.types import (
    FillResult,
    GenerationDeps,
    GenerationFailed,
    StrategyChoice,
    Usage,
)

DETERMINISTIC_PROVIDER = "pack"
AnyPack = ArithmeticPack | KnowledgePack


async def fill(
    skeleton: Skeleton,
    request: CourseRequest,
    choice: StrategyChoice,
    deps: GenerationDeps,
    pack: AnyPack | None,
) -> FillResult:
    """The draft (possibly invalid: validation decides) and what producing it cost."""
    if choice.kind == "deterministic":
        if pack is None or pack.pack_id != choice.pack_id:
            raise GenerationFailed("no_pack", f"pack {choice.pack_id!r} is not installed", retryable=False)
        try:
            course = compile_pack(pack, skeleton, request)
        except ValueError as exc:
            raise GenerationFailed("invalid_request", str(exc), retryable=False) from exc
        return FillResult(course=course, usage=Usage(), provider=DETERMINISTIC_PROVIDER, model=None, prompt_version=None)
    if deps.llm is None:
        raise GenerationFailed(
            "model_not_configured", f"the llm strategy needs a text model: {MODEL_SETTINGS_HINT}", retryable=False
        )
    return await deps.llm.fill(skeleton, request, on_progress=deps.on_progress, use_cache=deps.use_cache)
