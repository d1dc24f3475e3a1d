"""The instance's concurrency pools are set before the first run can start (Dagster issue #33552: two
first runs on a fresh instance both create the pool's limit row lazily and one fails with
UniqueViolation concurrency_limits_concurrency_key_key). ignite_dagster/defs/pools.py says why."""

from __future__ import annotations

import multiprocessing

from dagster import DagsterInstance

from ignite_dagster.config import load_settings
from ignite_dagster.defs.pools import POOLS, set_pool_limits
from ignite_dagster.local.stack import prepare_instance
from tests.support.pools import run_pooled_job

FIRST_RUNS = 4


def test_every_pool_an_op_declares_is_one_the_instance_sets_up():
    from tests.support.code_location import code_location

    declared = {op.pool for job in code_location().resolve_all_job_defs() for op in job.graph.iterate_op_defs() if op.pool}
    assert declared and declared <= set(POOLS), declared


def _prepared(db_url, tmp_path, monkeypatch) -> str:
    """A fresh instance prepared the way `ignite dev`, the demo and the e2e tests prepare theirs."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IGNITE_HOME", str(tmp_path))
    monkeypatch.setenv("IGNITE_ENV", "test")
    home = tmp_path / "dagster"
    prepare_instance(load_settings(), dagster_home=home)
    return str(home)


def test_several_first_runs_started_at_once_on_a_fresh_instance_all_succeed(db_url, tmp_path, monkeypatch):
    home = _prepared(db_url, tmp_path, monkeypatch)
    with DagsterInstance.from_config(home) as instance:
        default = instance.global_op_concurrency_default_limit
        limits = {p.name: p for p in instance.event_log_storage.get_pool_limits()}
        assert default and all(limits[pool].limit == default and not limits[pool].from_default for pool in POOLS)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(FIRST_RUNS), ctx.Queue()
    procs = [ctx.Process(target=run_pooled_job, args=(home, db_url, barrier, queue)) for _ in range(FIRST_RUNS)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=180) for _ in procs]  # one answer per run process, whatever happened
    for proc in procs:
        proc.join(30)
    assert all(ok for ok, _ in results), [failure for ok, failure in results if not ok]


def test_a_pool_limit_set_by_an_operator_is_kept_and_a_lazy_default_is_made_explicit(db_url, tmp_path, monkeypatch):
    home = _prepared(db_url, tmp_path, monkeypatch)
    with DagsterInstance.from_config(home) as instance:
        storage = instance.event_log_storage
        pool = POOLS[0]
        storage.set_concurrency_slots(pool, 7)  # what `dagster instance concurrency set model_provider 7` does
        assert set_pool_limits(instance)[pool] == 7
        storage.delete_concurrency_limit(pool)
        storage.initialize_concurrency_limit_to_default(pool)  # what Dagster's first step does lazily
        assert set_pool_limits(instance)[pool] == instance.global_op_concurrency_default_limit
        limit = next(p for p in storage.get_pool_limits() if p.name == pool)
        assert not limit.from_default  # Dagster will not initialise it again at run time
