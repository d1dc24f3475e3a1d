"""Usage settings and windows without a database: the daily budget window ends at the next UTC midnight,
and a cost budget without a price is refused at start (the cost reported and the budget spent through the
worker, the API and `ignite usage` are tests/integration/test_usage.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ignite_dagster.budget import next_window
from ignite_dagster.config import ConfigError, load_settings


def test_next_window_is_the_next_utc_midnight():
    assert next_window(datetime(2026, 3, 1, 23, 59, tzinfo=UTC)) == datetime(2026, 3, 2, tzinfo=UTC)
    assert next_window(datetime(2026, 3, 1, 0, 0, tzinfo=UTC)) - datetime(2026, 3, 1, tzinfo=UTC) == timedelta(days=1)


def test_a_cost_budget_without_a_price_is_refused_at_start():
    with pytest.raises(ConfigError, match="IGNITE_ORG_DAILY_COST_BUDGET_USD"):
        load_settings({"IGNITE_TEXT_MODEL": "m", "IGNITE_ORG_DAILY_COST_BUDGET_USD": "5"})
    with pytest.raises(ConfigError, match="IGNITE_LLM_RPM"):
        load_settings({"IGNITE_LLM_RPM": "0"})
