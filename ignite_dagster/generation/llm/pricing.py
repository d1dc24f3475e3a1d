"""Token cost from the configured price table (``IGNITE_LLM_PRICES``, USD per 1M tokens).

Decision: a model that is not in the table has an *unknown* cost (``None``), never ``0``. A zero would
read as "free" on a dashboard and hide a missing price; ``None`` shows up as "unknown" and is easy to
alert on. The same holds for an empty table (no prices configured) and for an attempt whose response
carried no ``usage`` block: the tokens were billed but we cannot say how many.

Optional ``cached_input`` prices prompt tokens served from the provider's prompt cache; without it
cached tokens are billed at the ``input`` rate (what the provider charges when it has no discount).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

PER_TOKENS = Decimal(1_000_000)


def price_for(prices: Mapping[str, Mapping[str, Decimal]], *models: str | None) -> Mapping[str, Decimal] | None:
    """The first table entry matching one of ``models`` (configured name first, then the served name).

    The served name may carry a dated suffix (``gpt-4o-mini-2024-07-18``); an entry for the configured
    name wins so one price row covers every snapshot the provider routes to.
    """
    for model in models:
        if model and model in prices:
            entry = prices[model]
            if "input" in entry and "output" in entry:
                return entry
    return None


def token_cost(
    prices: Mapping[str, Mapping[str, Decimal]],
    model: str,
    tokens_in: int,
    tokens_out: int,
    *,
    cached_in: int = 0,
    served_model: str | None = None,
) -> Decimal | None:
    """USD cost of one call, or ``None`` when the model has no price (see module docstring)."""
    entry = price_for(prices, model, served_model)
    if entry is None:
        return None
    cached_in = max(0, min(cached_in, tokens_in))
    cached_rate = entry.get("cached_input", entry["input"])
    cost = (
        Decimal(tokens_in - cached_in) * entry["input"]
        + Decimal(cached_in) * cached_rate
        + Decimal(tokens_out) * entry["output"]
    ) / PER_TOKENS
    return cost
