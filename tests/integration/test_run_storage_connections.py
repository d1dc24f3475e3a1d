"""A run's process holds its Dagster storage connections (``defs/run_process.py``): on the instance's
Postgres storage, as production runs it (dagster.yaml), a run opens a few connections, not one per
storage call. Measured: the 6-course run below opened 102 before, 23 after (the run's start, before its
first step can hold them, still opens ~20); a one-course model run opened 85, each ~6 ms."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import psycopg
import pytest
import sqlalchemy
from dagster import DagsterInstance

from ignite_dagster.defs.courses.jobs import GENERATE_JOB
from ignite_dagster.defs.run_process import hold_storage_connections
from ignite_dagster.defs.run_tags import encode_claims
from ignite_dagster.queue import JobQueue
from tests.support.code_location import code_location
from tests.support.jobs import new_course

SUBJECTS = ("addition", "division", "subtraction", "multiplication")
# the storage calls of the run's start (the run, its plan, the first step's start) still connect each
# time; after the first step starts, one pooled connection per storage and a few while calls overlap
MOST_CONNECTIONS = 30


@pytest.fixture
def run_env(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IGNITE_STORAGE_ROOT", str(tmp_path / "storage"))
    monkeypatch.setenv("IGNITE_HEARTBEAT_SECONDS", "600")
    monkeypatch.setenv("IGNITE_RUN_DEAD_AFTER_SECONDS", "1800")
    home = tmp_path / "dagster-home"
    home.mkdir()
    # the instance's storage as dagster.yaml configures it: Postgres (this test's database)
    (home / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: {db_url}\n")
    return str(home)


@contextmanager
def counting_connects():
    """Every new DBAPI connection an SQLAlchemy engine opens (Dagster's storages; our queue is psycopg's)."""
    counted = {"n": 0}
    lock = threading.Lock()

    def connected(dbapi_connection, connection_record) -> None:
        with lock:
            counted["n"] += 1

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", connected)
    try:
        yield counted
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", connected)


def test_a_run_on_postgres_storage_opens_a_few_connections_not_one_per_storage_call(db_url, org_id, run_env):
    queue = JobQueue(db_url)
    for i in range(6):
        queue.enqueue_course(new_course(f"c-{i}", subject=SUBJECTS[i % len(SUBJECTS)]), organization_id=org_id)
    jobs = queue.claim_course_jobs("sensor", limit=6)
    job = code_location().resolve_job_def(GENERATE_JOB)  # loaded first, as a run's process loads it
    with DagsterInstance.from_config(run_env) as instance:
        with counting_connects() as connects:
            result = job.execute_in_process(
                instance=instance, raise_on_error=False,
                run_config={"ops": {"claimed_course_jobs": {"config": {
                    "jobs": encode_claims([(j.id, j.attempt) for j in jobs])}}}})
        events = instance.all_logs(result.run_id)
    assert result.success
    assert {queue.get(j.id).status for j in jobs} == {"done"}
    asset_events = [e for e in events if e.dagster_event and e.dagster_event.event_type_value in
                    ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")]
    assert len(asset_events) == 6 * 4  # every course still reported: two materializations, two checks
    print(f"\n6 courses, {len(events)} events: {connects['n']} storage connections")
    assert connects["n"] <= MOST_CONNECTIONS, f"{connects['n']} connections for {len(events)} events"


def test_an_instances_connections_are_held_once_and_only_on_postgres(run_env):
    with DagsterInstance.from_config(run_env) as instance:
        assert hold_storage_connections(instance) is True
        assert hold_storage_connections(instance) is False  # the second run step of the same instance
        pool = instance.event_log_storage._engine.pool
        assert isinstance(pool, sqlalchemy.pool.QueuePool)
    with DagsterInstance.ephemeral() as memory:
        assert hold_storage_connections(memory) is False


def test_a_process_keeps_the_idle_connections_of_no_more_than_its_latest_run(db_url, run_env):
    def connections() -> int:
        with psycopg.connect(db_url) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchone()[0]

    finished = []  # kept, as the reference cycles a finished run's instance sits in keep it until a collection
    for _ in range(4):  # a Celery worker's process: one instance per run, one run after another
        with DagsterInstance.from_config(run_env) as instance:
            hold_storage_connections(instance)
            instance.get_runs(limit=1)
            instance.event_log_storage.get_logs_for_run("no-such-run")
            during = connections()
        finished.append(instance)
    assert 1 <= during <= 3
    assert connections() <= during, "the earlier runs' pooled connections are still open"
