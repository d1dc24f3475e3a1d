"""Shared budgets: provider rate limits across every process, and per-organization daily spend.

Domain code over Postgres (no Dagster): ``rate_limit`` holds the request/token/in-flight budget one
provider endpoint + model shares across every run, process and daemon; ``org`` the per-organization
daily usage ledger and its budget check. The SQL lives in ``sql/007_budgets_fair_share.sql``.
"""

from ignite_dagster.budget.from_settings import guarded, image_budget, org_budget, text_budget
from ignite_dagster.budget.org import OrgBudget, OrgBudgetExhausted, OrgUsage, next_window, record_org_usage
from ignite_dagster.budget.rate_limit import (
    BudgetLimits,
    BudgetWaitTooLong,
    Grant,
    ProviderBudget,
    budget_key,
    estimate_tokens,
)

__all__ = [
    "BudgetLimits",
    "BudgetWaitTooLong",
    "Grant",
    "OrgBudget",
    "OrgBudgetExhausted",
    "OrgUsage",
    "ProviderBudget",
    "budget_key",
    "estimate_tokens",
    "guarded",
    "image_budget",
    "org_budget",
    "text_budget",
    "next_window",
    "record_org_usage",
]
