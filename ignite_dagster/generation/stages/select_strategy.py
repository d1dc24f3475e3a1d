"""Stage 1: choose between a deterministic pack and skeleton + LLM.

Rules (course-format.md): an explicit ``strategy`` wins; otherwise a matching pack is used when the
request carries no notes (and no study text of its own — both ask for the requester's material, which a
fixed pack cannot honour); otherwise the model. Needing the model without one configured is a loud,
non-retryable failure: content is never invented to cover for missing configuration.
"""

from __future__ import annotations

from ignite_dagster.course.request import CourseRequest
from ignite_dagster.generation.packs import PackIndex
from ignite_dagster.generation.types import GenerationFailed, StrategyChoice

MODEL_SETTINGS_HINT = "set OPENAI_API_KEY (and IGNITE_TEXT_MODEL, optionally OPENAI_BASE_URL)"


def _no_model(why: str) -> GenerationFailed:
    return GenerationFailed(
        "model_not_configured",
        f"{why}, but no text model is configured: {MODEL_SETTINGS_HINT}",
        retryable=False,
    )


def select_strategy(request: CourseRequest, packs_index: PackIndex, model_configured: bool) -> StrategyChoice:
    """The strategy for ``request``; raises GenerationFailed (no_pack, invalid_request, model_not_configured)."""
    pack = packs_index.find_for(request)
    where = f"subject {request.subject!r}, grade {request.grade or request.grade_band}"

    if request.strategy == "deterministic":
        if pack is None:
            topics = ", ".join(packs_index.topics()) or "none"
            raise GenerationFailed(
                "no_pack",
                f"strategy 'deterministic' was requested but no pack matches {where}; packs exist for: {topics}",
                retryable=False,
            )
        reason = pack.unsupported_reason(request)
        if reason:
            raise GenerationFailed("invalid_request", f"strategy 'deterministic': {reason}", retryable=False)
        note = " (notes are not used by packs)" if request.notes or request.study_text else ""
        return StrategyChoice(kind="deterministic", pack_id=pack.pack_id, reason=f"requested explicitly{note}")

    if request.strategy == "llm":
        if not model_configured:
            raise _no_model("strategy 'llm' was requested")
        return StrategyChoice(kind="llm", pack_id=None, reason="requested explicitly")

    if pack is None:
        why = f"no pack matches {where}"
    elif request.notes or request.study_text:
        why = "the request has notes or its own study text, which only the model can use"
    else:
        unsupported = pack.unsupported_reason(request)
        if unsupported is None:
            return StrategyChoice(kind="deterministic", pack_id=pack.pack_id, reason=f"pack {pack.pack_id} matches {where}")
        why = unsupported
    if not model_configured:
        raise _no_model(f"this request needs the model ({why})")
    return StrategyChoice(kind="llm", pack_id=None, reason=why)
