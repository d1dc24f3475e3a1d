"""The course-jobs sensor against a real Postgres queue and a real (ephemeral) Dagster instance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from dagster import DagsterInstance, DagsterRunStatus, SensorResult, SkipReason, build_sensor_context
from dagster._core.test_utils import create_run_for_test

from ignite_dagster.defs.courses.jobs import GENERATE_JOB
from ignite_dagster.defs.courses.sensors import build_course_jobs_sensor
from ignite_dagster.defs.queue_sensors import plan_runs
from ignite_dagster.defs.run_tags import decode_claims
from ignite_dagster.queue import JobQueue
from tests.support.jobs import new_course


@pytest.fixture
def sensor_env(db_url, monkeypatch, sensor_resources):
    monkeypatch.setenv("IGNITE_MAX_CONCURRENT_RUNS", "2")
    monkeypatch.setenv("IGNITE_COURSES_PER_RUN", "3")
    return JobQueue(db_url)


def _evaluate(instance, resources):
    with build_sensor_context(instance=instance, resources=resources) as context:
        return build_course_jobs_sensor(1)(context)


def test_no_claim_when_nothing_is_claimable(sensor_env, sensor_resources, org_id):
    queue = sensor_env
    job = queue.enqueue_course(new_course(), organization_id=org_id).job
    claimed = queue.claim_course_jobs("w")[0]
    queue.fail(claimed.id, "ai_course_jobs", claimed.attempt, "e", "provider_unavailable", True)  # backing off
    with DagsterInstance.ephemeral() as instance:
        result = _evaluate(instance, sensor_resources)
    assert isinstance(result, SkipReason) and "no claimable" in result.skip_message
    assert queue.get(job.id).status == "failed"


def test_claims_batches_into_runs_with_attempt_run_keys_and_partitions(sensor_env, sensor_resources, org_id):
    queue = sensor_env
    ids = [queue.enqueue_course(new_course(f"c{i}"), organization_id=org_id).job.id for i in range(5)]
    with DagsterInstance.ephemeral() as instance:
        result = _evaluate(instance, sensor_resources)
    assert isinstance(result, SensorResult)
    assert [len(decode_claims(r.tags["ignite/jobs"])) for r in result.run_requests] == [3, 2]
    claims = [c for r in result.run_requests for c in decode_claims(r.tags["ignite/jobs"])]
    assert sorted(c[0] for c in claims) == sorted(ids) and {c[1] for c in claims} == {1}
    for r in result.run_requests:
        first_id, first_attempt = decode_claims(r.tags["ignite/jobs"])[0]
        assert r.run_key == f"course:{first_id}:{first_attempt}"
        assert r.run_config["ops"]["claimed_course_jobs"]["config"]["jobs"] == r.tags["ignite/jobs"]
    assert sorted(result.dynamic_partitions_requests[0].partition_keys) == [f"c{i}" for i in range(5)]
    assert all(queue.get(i).status == "processing" for i in ids)


def test_retry_gets_a_new_run_key(sensor_env, sensor_resources, org_id):
    queue = sensor_env
    job = queue.enqueue_course(new_course(), organization_id=org_id).job
    with DagsterInstance.ephemeral() as instance:
        first = _evaluate(instance, sensor_resources).run_requests[0].run_key
        queue.fail(job.id, "ai_course_jobs", 1, "e", "provider_unavailable", True, backoff_base=timedelta(0))
        second = _evaluate(instance, sensor_resources).run_requests[0].run_key
    assert (first, second) == (f"course:{job.id}:1", f"course:{job.id}:2")


def test_capacity_cap_claims_nothing_when_runs_are_full(sensor_env, sensor_resources, org_id):
    queue = sensor_env
    ids = [queue.enqueue_course(new_course(f"c{i}"), organization_id=org_id).job.id for i in range(5)]
    with DagsterInstance.ephemeral() as instance:
        create_run_for_test(instance, job_name=GENERATE_JOB, status=DagsterRunStatus.STARTING)
        result = _evaluate(instance, sensor_resources)  # one slot left of 2: one run of 3 jobs
        assert len(result.run_requests) == 1
        create_run_for_test(instance, job_name=GENERATE_JOB, status=DagsterRunStatus.STARTED)
        full = _evaluate(instance, sensor_resources)
    assert isinstance(full, SkipReason) and "capacity" in full.skip_message
    assert sorted(q.status for q in (queue.get(i) for i in ids)) == ["pending"] * 2 + ["processing"] * 3


def test_tick_respects_its_time_budget(sensor_env, org_id):
    queue = sensor_env
    for i in range(4):
        queue.enqueue_course(new_course(f"c{i}"), organization_id=org_id)
    assert plan_runs(lambda: queue.claim_course_jobs("w", limit=1), free=4, per_run=4, budget_s=0) == []
    assert queue.depth()["ai_course_jobs"] == {"pending": 4}


def test_two_daemons_ticking_together_never_share_a_claim(sensor_env, sensor_resources, org_id, monkeypatch):
    """Two sensor ticks at once (two daemons): SKIP LOCKED hands each job to one of them, and the run
    keys (job id + attempt) never collide."""
    import threading

    monkeypatch.setenv("IGNITE_MAX_CONCURRENT_RUNS", "4")
    monkeypatch.setenv("IGNITE_COURSES_PER_RUN", "2")
    queue = sensor_env
    for i in range(12):
        queue.enqueue_course(new_course(f"c{i}"), organization_id=org_id)
    results, start = [], threading.Barrier(2)

    def tick():
        with DagsterInstance.ephemeral() as instance:
            start.wait()
            results.append(_evaluate(instance, sensor_resources))

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claims = [c for r in results for req in r.run_requests for c in decode_claims(req.tags["ignite/jobs"])]
    keys = [req.run_key for r in results for req in r.run_requests]
    assert len(claims) == len({c[0] for c in claims}) > 0
    assert len(keys) == len(set(keys))
    assert len(claims) == sum(1 for j in queue.list(limit=100) if j.status == "processing")


def test_ticks_share_one_pool_per_process(sensor_env, sensor_resources, db_url):
    """A sensor's resources are set up on every tick; the code server must not open a pool per tick."""
    import psycopg

    def connections() -> int:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchone()[0]

    with DagsterInstance.ephemeral() as instance:
        _evaluate(instance, sensor_resources)
        after_one = connections()
        for _ in range(4):
            _evaluate(instance, sensor_resources)
        assert connections() == after_one >= 1  # the pool outlives its tick and is the same one
