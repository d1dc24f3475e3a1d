"""Per-organization daily usage (UTC days) and the daily token / cost budget.

Every attempt of a course job adds what it spent to ``org_usage_daily`` when it ends (failed or
done), so the ledger counts billed work of failed attempts too. Before a course spends anything on the
model, the worker asks ``OrgBudget.check``: an organization whose day is spent gets its job failed as
``budget_exhausted`` until the next UTC day (no retry spent), and every other organization keeps going.

Granularity, and why: the check runs once per course before the fill, and the ledger is written per
attempt, so a day can overshoot by what the organization's courses in flight spend
(``IGNITE_ORG_MAX_COURSES_IN_FLIGHT`` bounds that). Counting per call would need the organization
inside the shared model client of a run, whose courses may belong to several organizations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class OrgUsage:
    """One organization's spend on one UTC day; ``cost_usd`` is a lower bound when ``unpriced_tokens``."""

    organization_id: UUID
    day: date
    calls: int = 0
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced_calls: int = 0
    unpriced_tokens: int = 0

    @property
    def cost_known(self) -> bool:
        return self.unpriced_calls == 0 and self.unpriced_tokens == 0


class OrgBudgetExhausted(Exception):
    """The organization spent its daily budget; ``until`` is when the next budget window opens."""

    reason_code = "budget_exhausted"

    def __init__(self, organization_id: UUID, message: str, until: datetime):
        super().__init__(message)
        self.organization_id = organization_id
        self.message = message
        self.until = until


def next_window(now: datetime | None = None) -> datetime:
    """Start of the next UTC day: when a daily budget renews."""
    now = now or datetime.now(UTC)
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC)


def record_org_usage(conn: Any, organization_id: UUID, calls: int, tokens: int, cost_usd: Decimal | None) -> None:
    """Add one attempt's spend to today's row; ``cost_usd=None`` (unknown) is counted as unpriced."""
    conn.execute("SELECT record_org_usage(%s, %s, %s, %s)", (organization_id, calls, tokens, cost_usd))


def usage_today(conn: Any, organization_id: UUID) -> OrgUsage:
    row = conn.execute(
        "SELECT organization_id, day, calls, tokens, cost_usd, unpriced_calls, unpriced_tokens "
        "FROM org_usage_daily WHERE organization_id = %s AND day = (now() AT TIME ZONE 'UTC')::date",
        (organization_id,),
    ).fetchone()
    if row is None:
        return OrgUsage(organization_id, datetime.now(UTC).date())
    return OrgUsage(**(row if isinstance(row, dict) else dict(zip(
        ("organization_id", "day", "calls", "tokens", "cost_usd", "unpriced_calls", "unpriced_tokens"), row,
        strict=True))))


@dataclass(frozen=True)
class OrgBudget:
    """The daily budget every organization gets (None: not limited on that axis)."""

    daily_tokens: int | None = None
    daily_cost_usd: Decimal | None = None

    @property
    def limited(self) -> bool:
        return self.daily_tokens is not None or self.daily_cost_usd is not None

    def check(self, conn: Any, organization_id: UUID, now: datetime | None = None) -> OrgUsage:
        """Today's usage, or OrgBudgetExhausted when a limit is reached.

        A cost limit with spend of unknown price cannot say the day is within budget: the unknown part
        is reported in the message and the known part is compared (config forbids a cost budget
        without a price for the configured model, so this is a provider answer without usage)."""
        usage = usage_today(conn, organization_id)
        if self.daily_tokens is not None and usage.tokens >= self.daily_tokens:
            raise OrgBudgetExhausted(
                organization_id,
                f"organization {organization_id} used {usage.tokens} of its {self.daily_tokens} tokens today "
                "(IGNITE_ORG_DAILY_TOKEN_BUDGET); retried when the budget renews at 00:00 UTC",
                next_window(now),
            )
        if self.daily_cost_usd is not None and usage.cost_usd >= self.daily_cost_usd:
            unknown = f" plus {usage.unpriced_tokens} tokens of unknown price" if not usage.cost_known else ""
            raise OrgBudgetExhausted(
                organization_id,
                f"organization {organization_id} spent ${usage.cost_usd:.4f}{unknown} of its "
                f"${self.daily_cost_usd} today (IGNITE_ORG_DAILY_COST_BUDGET_USD); retried when the budget "
                "renews at 00:00 UTC",
                next_window(now),
            )
        return usage
