from __future__ import annotations

import pytest

from ignite_dagster.config import ConfigError, load_settings, settings_table


def test_production_reports_every_missing_setting_together():
    with pytest.raises(ConfigError) as err:
        load_settings({"IGNITE_ENV": "production", "STORAGE_BACKEND": "s3"})
    assert err.value.missing == ["DATABASE_URL", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY",
                                 "PUBLIC_MEDIA_BASE_URL"]
    assert "DATABASE_URL" in str(err.value) and "S3_SECRET_ACCESS_KEY" in str(err.value)


def test_malformed_values_are_reported_together():
    with pytest.raises(ConfigError) as err:
        load_settings({"IGNITE_HEARTBEAT_SECONDS": "soon", "IGNITE_DB_POOL_MAX": "x", "STORAGE_BACKEND": "ftp"})
    assert len(err.value.invalid) == 3


def test_no_silent_defaults_for_secrets():
    s = load_settings({})
    assert (s.agent_token, s.openai_api_key, s.jwt_secret, s.database_url) == (None, None, None, None)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY, IGNITE_TEXT_MODEL"):
        s.require("model", "OPENAI_API_KEY", "IGNITE_TEXT_MODEL")


def test_price_table_parse_errors_are_loud():
    with pytest.raises(ConfigError, match="IGNITE_LLM_PRICES"):
        load_settings({"IGNITE_LLM_PRICES": "{not json"}).prices()
    prices = load_settings({"IGNITE_LLM_PRICES": '{"m": {"input": 0.15, "output": 0.6}}'}).prices()
    assert str(prices["m"]["output"]) == "0.6"


def test_every_setting_is_documented():
    rows = settings_table()
    assert all(r["doc"] for r in rows)
    assert len({r["env"] for r in rows}) == len(rows)
