"""What a fill (or repair) spent: every HTTP attempt's tokens and cost, failed attempts included."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ignite_dagster.generation.llm.pricing import token_cost


@dataclass
class UsageMeter:
    """Everything one fill (or repair) spent, summed over every attempt, failed ones included.

    ``calls`` counts HTTP attempts made; ``cache_hits`` counts answers served from the cache instead.
    ``cost_usd`` becomes ``None`` (unknown) as soon as one billed attempt cannot be priced — the model
    has no price row, or the response had no ``usage`` — and stays unknown: a partial sum would
    under-report.
    """

    model: str
    prices: Mapping[str, Mapping[str, Decimal]]
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    cache_hits: int = 0
    failed_attempts: int = 0
    cost_usd: Decimal | None = field(default_factory=Decimal)
    priced_cost_usd: Decimal = field(default_factory=Decimal)
    unpriced_models: set[str] = field(default_factory=set)
    served_models: set[str] = field(default_factory=set)
    # the generation's own span (monotonic): first HTTP attempt sent, last answer received
    first_call_at: float | None = None
    last_answer_at: float | None = None

    def generation_ms(self) -> int | None:
        """First call → last answer in ms; None when no call was made (every answer from the cache)."""
        if self.first_call_at is None or self.last_answer_at is None:
            return None
        return int((self.last_answer_at - self.first_call_at) * 1000)

    def record_response(self, usage: Mapping[str, Any] | None, served_model: str | None) -> None:
        """Add one answered attempt (HTTP 200) and its cost."""
        if served_model:
            self.served_models.add(served_model)
        if not usage:
            self.cost_usd = None
            self.unpriced_models.add(f"{served_model or self.model} (no usage reported)")
            return
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cached_tokens += cached
        cost = token_cost(self.prices, self.model, tokens_in, tokens_out, cached_in=cached, served_model=served_model)
        if cost is None:
            self.cost_usd = None
            self.unpriced_models.add(self.model)
            return
        self.priced_cost_usd += cost
        if self.cost_usd is not None:
            self.cost_usd += cost
