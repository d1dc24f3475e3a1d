"""Honest cost and per-organization usage: a model without a price reports its cost as unknown (null plus
a flag) on the job, in the worker's result, the API's job status, the usage ledger and `ignite usage`,
never as 0; a spent daily budget fails the job as budget_exhausted until the next UTC day (the window and
the settings on their own: tests/unit/test_usage.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import psycopg
import pytest

from ignite_dagster.api.schemas import JobOut
from ignite_dagster.budget import next_window, record_org_usage
from ignite_dagster.config import Settings
from ignite_dagster.course.request import CourseRequest
from ignite_dagster.generation.llm import ModelWriter
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.staged import JobAborted
from ignite_dagster.storage.local import LocalObjectStore
from tests.support.generate import generate
from tests.support.openai_server import CHAT, OpenAICompatServer, ScriptedCourseModel

PRICES = '{"test-model": {"input": 0.15, "output": 0.6}}'


def model_settings(server: OpenAICompatServer, **kw) -> Settings:
    values = {"openai_api_key": "test-key", "openai_base_url": server.base_url, "text_model": "test-model",
              "llm_concurrency": 4, "llm_timeout_seconds": 5.0, **kw}
    return Settings(**values)


def request(course_id: str) -> CourseRequest:
    # no pack covers volcanoes: the model path
    return CourseRequest(course_id=course_id, subject="volcanoes", grade_band="3-5", items_per_group=4, groups_count=2)


@pytest.fixture
def server():
    with OpenAICompatServer() as srv:
        srv.respond_with(CHAT, ScriptedCourseModel())
        yield srv


def usage_rows(db_url: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT organization_id, calls, tokens, cost_usd, unpriced_calls, unpriced_tokens "
                            "FROM org_usage_daily").fetchall()


def ignite_usage(db_url: str, tmp_path) -> list[dict]:
    env = dict(os.environ, DATABASE_URL=db_url, IGNITE_HOME=str(tmp_path / "home"),
               IGNITE_STORAGE_ROOT=str(tmp_path / "storage"))
    proc = subprocess.run([sys.executable, "-m", "ignite_dagster.cli.main", "usage", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_model_without_a_price_reports_unknown_cost_never_zero(db_url, org_id, server, tmp_path):
    settings = model_settings(server)  # IGNITE_LLM_PRICES unset
    store = LocalObjectStore(tmp_path / "store")
    done = generate(db_url, org_id, request("volcanoes-unpriced"), store=store, llm=ModelWriter(settings, store),
                    settings=settings)
    job = done.job
    assert job.status == "done" and job.tokens and job.tokens > 0
    assert job.cost_usd is None and job.cost_known is False
    assert done.work.result["cost_usd"] is None
    assert job.summary["costKnown"] is False  # what the materialization metadata reads
    status = JobOut.of(job)
    assert status.costUsd is None and status.costKnown is False
    ((org, calls, tokens, cost, unpriced_calls, unpriced_tokens),) = usage_rows(db_url)
    assert (org, tokens, unpriced_tokens, unpriced_calls) == (org_id, job.tokens, job.tokens, calls)
    (row,) = ignite_usage(db_url, tmp_path)
    assert row["cost_known"] is False and row["cost_usd"] is None and row["tokens"] == job.tokens


def test_a_priced_model_reports_its_cost_and_the_ledger_matches(db_url, org_id, server, tmp_path):
    settings = model_settings(server, llm_prices=PRICES)
    store = LocalObjectStore(tmp_path / "store")
    done = generate(db_url, org_id, request("volcanoes-priced"), store=store, llm=ModelWriter(settings, store),
                    settings=settings)
    job = done.job
    assert job.cost_known is True and job.cost_usd is not None and job.cost_usd > 0
    assert job.summary["costKnown"] is True and JobOut.of(job).costKnown is True
    ((_, _, tokens, cost, unpriced_calls, _),) = usage_rows(db_url)
    assert tokens == job.tokens and unpriced_calls == 0
    assert round(cost, 4) == job.cost_usd  # the job column keeps 4 decimals, the ledger 6
    (row,) = ignite_usage(db_url, tmp_path)
    assert row["cost_known"] is True and Decimal(str(row["cost_usd"])) == cost


def test_a_deterministic_course_costs_a_known_zero(db_url, org_id, tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    done = generate(db_url, org_id, {"course_id": "add-pack", "subject": "addition", "grade_band": "3-5"},
                    store=store)
    assert done.job.summary["costKnown"] is True and done.job.cost_known is True
    assert usage_rows(db_url) == []  # no model call, nothing on the organization's books


def test_a_spent_daily_budget_fails_the_job_as_budget_exhausted_and_spares_other_orgs(db_url, org_id, server, tmp_path):
    with psycopg.connect(db_url, autocommit=True) as conn:
        other = conn.execute("INSERT INTO organizations (name) VALUES ('other') RETURNING id").fetchone()[0]
        record_org_usage(conn, org_id, 3, 5000, None)
    settings = model_settings(server, org_daily_token_budget=5000)
    store = LocalObjectStore(tmp_path / "store")
    with pytest.raises(JobAborted) as info:
        generate(db_url, org_id, request("volcanoes-over"), store=store, llm=ModelWriter(settings, store),
                 settings=settings)
    assert info.value.reason_code == "budget_exhausted"
    assert server.requests_to(CHAT) == []  # nothing was spent on a job over budget
    queue = JobQueue(db_url)
    (job,) = queue.list(organization_id=org_id)
    assert (job.status, job.reason_code, job.retry_count) == ("failed", "budget_exhausted", 0)
    assert job.next_attempt_at == next_window()
    assert "IGNITE_ORG_DAILY_TOKEN_BUDGET" in job.error
    assert any(e.meta and e.meta.get("reason_code") == "budget_exhausted" for e in queue.events(job.id))
    # the other organization has its own budget
    done = generate(db_url, other, request("volcanoes-other"), store=store, llm=ModelWriter(settings, store),
                    settings=settings)
    assert done.job.status == "done"
