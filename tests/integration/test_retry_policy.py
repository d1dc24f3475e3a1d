"""The one retry policy (``queue/retry.py``): the model call's per-attempt decision against its table, the
retryable reasons both job kinds read from it, the media ``provider_timeout`` decision, and the SQL side
of the queue backoff and free releases agreeing with the Python constants (real Postgres)."""

from __future__ import annotations

import inspect
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ignite_dagster.config import Settings
from ignite_dagster.generation import types as generation_types
from ignite_dagster.generation.llm.client import ProviderConfig
from ignite_dagster.generation.types import REASON_CODES, GenerationFailed
from ignite_dagster.media import image_providers
from ignite_dagster.media.attach import CourseNotReady, TargetMissing
from ignite_dagster.media.image_providers import MediaProviderError
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.retry import (
    CALL_BACKOFF,
    COURSE_RETRYABLE,
    FREE_RELEASE_LIMIT,
    MEDIA_RETRYABLE,
    QUEUE_BACKOFF,
    Attempts,
    CallLimits,
    Outcome,
    decide,
    is_retryable,
)
from ignite_dagster.storage.keys import InvalidMediaTarget
from tests.support.jobs import new_course, new_media, set_columns

LIMITS = CallLimits(max_retries=3, timeout_retries=1, malformed_retries=2, max_retry_after_seconds=120.0,
                    timeout_seconds=60.0)
NONE = Attempts()

# (why, outcome, attempts so far, expected: (retry, reason, fatal, delay, pause_budget, next budget, attempts after))
TABLE = [
    ("429 insufficient_quota fails at once, account-wide",
     Outcome("http_status", status=429, quota=True, detail="no money"), NONE,
     (False, "provider_quota", True, None, False, None, NONE)),
    ("429 waits its retry-after and pauses the shared budget",
     Outcome("http_status", status=429, retry_after=7.0), NONE,
     (True, None, False, 7.0, True, None, Attempts(transient=1))),
    ("429 without retry-after waits the backoff",
     Outcome("http_status", status=429), Attempts(transient=2),
     (True, None, False, 2.0, True, None, Attempts(transient=3))),
    ("429 after max_retries retries is provider_rate_limited",
     Outcome("http_status", status=429, retry_after=1.0), Attempts(transient=3),
     (False, "provider_rate_limited", False, None, False, None, Attempts(transient=3))),
    ("429 asking for more than max_retry_after_seconds is not sat out",
     Outcome("http_status", status=429, retry_after=121.0), NONE,
     (False, "provider_rate_limited", False, None, False, None, NONE)),
    ("503 waits the backoff, alone",
     Outcome("http_status", status=503), NONE,
     (True, None, False, 0.5, False, None, Attempts(transient=1))),
    ("503 honours retry-after",
     Outcome("http_status", status=503, retry_after=3.0), Attempts(transient=1),
     (True, None, False, 3.0, False, None, Attempts(transient=2))),
    ("408 and 409 are transient", Outcome("http_status", status=408), NONE,
     (True, None, False, 0.5, False, None, Attempts(transient=1))),
    ("409 is transient", Outcome("http_status", status=409), NONE,
     (True, None, False, 0.5, False, None, Attempts(transient=1))),
    ("5xx after max_retries retries is provider_unavailable",
     Outcome("http_status", status=500), Attempts(transient=3),
     (False, "provider_unavailable", False, None, False, None, Attempts(transient=3))),
    ("400 is provider_error at once", Outcome("http_status", status=400), NONE,
     (False, "provider_error", False, None, False, None, NONE)),
    ("401 is provider_error, account-wide", Outcome("http_status", status=401), NONE,
     (False, "provider_error", True, None, False, None, NONE)),
    ("403 is account-wide", Outcome("http_status", status=403), NONE,
     (False, "provider_error", True, None, False, None, NONE)),
    ("404 (unknown model) is account-wide", Outcome("http_status", status=404), NONE,
     (False, "provider_error", True, None, False, None, NONE)),
    ("422 is provider_error, not account-wide", Outcome("http_status", status=422), NONE,
     (False, "provider_error", False, None, False, None, NONE)),
    ("a connection error waits the backoff", Outcome("connection", detail="ConnectError"), Attempts(transient=1),
     (True, None, False, 1.0, False, None, Attempts(transient=2))),
    ("a connection error after max_retries is provider_unavailable",
     Outcome("connection", detail="ConnectError"), Attempts(transient=3),
     (False, "provider_unavailable", False, None, False, None, Attempts(transient=3))),
    ("a timeout is retried at once", Outcome("timeout", detail="ReadTimeout"), NONE,
     (True, None, False, None, False, None, Attempts(timeouts=1))),
    ("a timeout after timeout_retries is provider_timeout", Outcome("timeout", detail="ReadTimeout"),
     Attempts(timeouts=1), (False, "provider_timeout", False, None, False, None, Attempts(timeouts=1))),
    ("timeouts and transient errors count apart", Outcome("timeout"), Attempts(transient=3),
     (True, None, False, None, False, None, Attempts(transient=3, timeouts=1))),
    ("a truncated answer is retried once with the output budget doubled",
     Outcome("truncated", budget=1000), NONE,
     (True, None, False, None, False, 2000, Attempts(truncated=True))),
    ("the doubled budget stays within the slot's ceiling", Outcome("truncated", budget=1000, ceiling=1500), NONE,
     (True, None, False, None, False, 1500, Attempts(truncated=True))),
    ("truncated twice is output_truncated", Outcome("truncated", budget=2000), Attempts(truncated=True),
     (False, "output_truncated", False, None, False, None, Attempts(truncated=True))),
    ("the content filter is content_refused", Outcome("content_filter"), NONE,
     (False, "content_refused", False, None, False, None, NONE)),
    ("a refusal is content_refused", Outcome("refusal", detail="no"), NONE,
     (False, "content_refused", False, None, False, None, NONE)),
    ("malformed output is retried", Outcome("malformed", detail="bad json"), Attempts(malformed=1),
     (True, None, False, None, False, None, Attempts(malformed=2))),
    ("malformed past malformed_retries is provider_error", Outcome("malformed", detail="bad json"),
     Attempts(malformed=2), (False, "provider_error", False, None, False, None, Attempts(malformed=3))),
]


@pytest.mark.parametrize(("why", "outcome", "attempts", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_the_model_calls_retry_decision_follows_its_table(why, outcome, attempts, expected):
    retry, reason, fatal, delay, pause, budget, after = expected
    # draw=0: no jitter, so the backoff is exactly min(cap, base * 2^n)
    decision = decide(outcome, attempts, LIMITS, draw=0.0)
    assert (decision.retry, decision.reason, decision.fatal, decision.delay, decision.pause_budget,
            decision.budget, decision.attempts) == (retry, reason, fatal, delay, pause, budget, after), why
    assert decision.message


def test_the_call_backoff_is_jittered_down_by_at_most_a_quarter_and_capped():
    outcome = Outcome("http_status", status=503)
    assert decide(outcome, Attempts(transient=1), LIMITS, draw=0.999).delay == pytest.approx(1.0 * 0.75, rel=1e-2)
    assert decide(outcome, Attempts(transient=2), CallLimits(max_retries=100), draw=0.0).delay == 2.0
    assert decide(outcome, Attempts(transient=20), CallLimits(max_retries=100), draw=0.0).delay == CALL_BACKOFF.cap_seconds


def test_the_provider_config_defaults_are_the_policys():
    config = ProviderConfig(api_key="k", model="m")
    limits = CallLimits()
    assert config.limits == limits
    assert (config.backoff_base_seconds, config.backoff_cap_seconds) == (CALL_BACKOFF.base_seconds,
                                                                           CALL_BACKOFF.cap_seconds)
    assert Settings().llm_max_retries == limits.max_retries
    assert Settings().llm_timeout_seconds == limits.timeout_seconds
    assert {f.name for f in fields(CallLimits)} - {"backoff"} <= {f.name for f in fields(ProviderConfig)}


def test_both_job_kinds_read_their_retryable_reasons_from_the_one_policy():
    assert generation_types.RETRYABLE_REASONS is COURSE_RETRYABLE
    assert image_providers.RETRYABLE_REASONS is MEDIA_RETRYABLE
    for reason in REASON_CODES | MEDIA_RETRYABLE | COURSE_RETRYABLE | {"provider_auth", "target_missing"}:
        assert GenerationFailed(reason, "x").retryable is is_retryable("course", reason), reason
        assert MediaProviderError(reason, "x").retryable is is_retryable("media", reason), reason
    # transient provider trouble is retried for both kinds alike; only a course retries a truncated answer
    assert {"output_truncated"} == COURSE_RETRYABLE - MEDIA_RETRYABLE
    assert {"course_not_ready"} == MEDIA_RETRYABLE - COURSE_RETRYABLE
    # the media stages' own failures, and storage's (which sits below the queue and cannot import it)
    for failure in (CourseNotReady, TargetMissing, InvalidMediaTarget):
        assert failure.retryable is is_retryable("media", failure.reason_code), failure
    assert not is_retryable("media", "provider_quota") and not is_retryable("course", "provider_quota")


def test_a_timed_out_image_goes_back_to_the_queue_for_another_attempt(db_url, org_id):
    """Decided: a media provider_timeout is retryable (it used to be dead-lettered at once)."""
    err = MediaProviderError("provider_timeout", "the image request passed its deadline")
    assert err.retryable is True
    queue = JobQueue(db_url)
    queued = new_media(queue, org_id).job
    [job] = queue.claim_media_jobs("w1")
    assert job.id == queued.id
    status = queue.fail(job.id, "ai_media_jobs", job.attempt, err.message, err.reason_code, err.retryable)
    assert status == "failed"
    set_columns(db_url, "ai_media_jobs", job.id, next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
    [again] = queue.claim_media_jobs("w2")
    assert (again.id, again.attempt, again.retry_count) == (job.id, 2, 1)


def test_the_queue_backoff_defaults_agree_in_sql_settings_and_the_client(db_url):
    assert (Settings().backoff_base_seconds, Settings().backoff_cap_seconds) == (QUEUE_BACKOFF.base_seconds,
                                                                                 QUEUE_BACKOFF.cap_seconds)
    signature = inspect.signature(JobQueue.fail).parameters
    assert signature["backoff_base"].default == QUEUE_BACKOFF.base
    assert signature["backoff_cap"].default == QUEUE_BACKOFF.cap
    with psycopg.connect(db_url, autocommit=True) as conn:
        base, cap = conn.execute(
            "SELECT (regexp_match(a, 'p_backoff_base interval DEFAULT ''([^'']+)''::interval'))[1]::interval,"
            "       (regexp_match(a, 'p_backoff_cap interval DEFAULT ''([^'']+)''::interval'))[1]::interval"
            "  FROM (SELECT pg_get_function_arguments('fail_job'::regproc) AS a) f").fetchone()
    assert (base, cap) == (QUEUE_BACKOFF.base, QUEUE_BACKOFF.cap)


@pytest.mark.parametrize("retry_count", [0, 3, 5, 12])
def test_the_sql_backoff_stays_within_the_python_formulas_bounds(db_url, org_id, retry_count):
    queue = JobQueue(db_url)
    queue.enqueue_course(new_course(), organization_id=org_id)
    [job] = queue.claim_course_jobs("w1")
    set_columns(db_url, "ai_course_jobs", job.id, retry_count=retry_count, max_retries=100)
    t0 = datetime.now(UTC)
    assert queue.fail(job.id, "ai_course_jobs", job.attempt, "x", "provider_unavailable", True) == "failed"
    delay = (queue.get(job.id).next_attempt_at - t0).total_seconds()
    shortest, longest = QUEUE_BACKOFF.delay(retry_count, 1.0), QUEUE_BACKOFF.delay(retry_count, 0.0)
    assert shortest - 1 <= delay <= longest + 1, (retry_count, delay, shortest, longest)


def test_the_free_release_limit_agrees_with_sql(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT ignite_free_release_limit()").fetchone()[0] == FREE_RELEASE_LIMIT


def test_a_stage_failure_nobody_classified_is_retried_and_so_is_a_storage_outage():
    from ignite_dagster.queue.staged import storage_failure
    from ignite_dagster.storage.base import StorageError

    assert storage_failure(StorageError("bucket unreachable")) == ("storage_error", "StorageError: bucket unreachable",
                                                                  True)
    assert is_retryable("course", "internal_error") and is_retryable("media", "internal_error")
