"""Budgets from settings: the one place that maps IGNITE_* budget settings to budget objects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from ignite_dagster.budget.org import OrgBudget
from ignite_dagster.budget.rate_limit import BudgetLimits, ProviderBudget, budget_key
from ignite_dagster.budget.retry_after import retry_after_of
from ignite_dagster.config import ConfigError, Settings


def _budget(settings: Settings, kind: str, model: str, limits: BudgetLimits, names: str,
            lease_seconds: float) -> ProviderBudget | None:
    if not limits.limited:
        return None
    if not settings.database_url:
        # the budget is shared through Postgres; without it every process would count alone
        raise ConfigError("provider budget", ["DATABASE_URL"], [f"{names} need the shared database"])
    # images have their own endpoint (IGNITE_IMAGE_BASE_URL, else OPENAI_BASE_URL): budget the server called
    base_url = settings.image_provider_base_url if kind == "image" else settings.openai_base_url
    return ProviderBudget.for_url(settings.database_url, budget_key(kind, base_url, model), limits,
                                  lease_seconds=lease_seconds)


def text_budget(settings: Settings) -> ProviderBudget | None:
    """The budget of OPENAI_BASE_URL + IGNITE_TEXT_MODEL, or None when no limit is configured."""
    limits = BudgetLimits(settings.llm_rpm, settings.llm_tpm, settings.llm_max_in_flight)
    if not settings.text_model:
        return None
    return _budget(settings, "text", settings.text_model, limits,
                   "IGNITE_LLM_RPM / IGNITE_LLM_TPM / IGNITE_LLM_MAX_IN_FLIGHT",
                   lease_seconds=max(120.0, 4 * settings.llm_timeout_seconds))


def image_budget(settings: Settings) -> ProviderBudget | None:
    """The budget of OPENAI_BASE_URL + IGNITE_IMAGE_MODEL (images per minute), or None."""
    if not settings.image_model:
        return None
    return _budget(settings, "image", settings.image_model, BudgetLimits(rpm=settings.images_per_minute),
                   "IGNITE_IMAGES_PER_MINUTE", lease_seconds=max(120.0, 2 * settings.image_timeout_seconds))


def org_budget(settings: Settings) -> OrgBudget:
    cost = settings.org_daily_cost_budget_usd
    return OrgBudget(settings.org_daily_token_budget, Decimal(str(cost)) if cost is not None else None)


@contextmanager
def guarded(budget: ProviderBudget | None, tokens: int = 0) -> Iterator[Any]:
    """One blocking provider request under ``budget`` (None: unlimited, nothing happens).

    Waits for a grant, releases it when the block ends, and turns a 429 with Retry-After (an SDK
    ``APIStatusError``: ``status_code`` and ``response.headers``) into a pause of the whole budget."""
    if budget is None:
        yield None
        return
    grant = budget.acquire(tokens)
    try:
        yield grant
    except BaseException as exc:
        if getattr(exc, "status_code", None) == 429:
            wait = retry_after_of(exc)
            if wait is not None:
                budget.pause(wait, "HTTP 429")
        budget.release(grant, 0)
        raise
    budget.release(grant, tokens)
