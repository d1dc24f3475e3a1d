"""The instance's concurrency pools, set before the first run can start.

Dagster creates a pool's limit row lazily, when the first step of the pool asks for a slot. On Postgres
that lazy step is not safe: two runs starting together on a fresh instance both insert the row, the
loser's transaction aborts (``UniqueViolation concurrency_limits_concurrency_key_key``, then "current
transaction is aborted"; Dagster issue #33552) and its run fails. The same happens on every run once
``pools.default_limit`` in dagster.yaml differs from a limit Dagster set from the old default.

So every pool this code location declares gets its limit written once, by one process, before any run
starts: ``ignite dev``, ``ignite demo`` and the tests call ``set_pool_limits`` after the instance folder
is prepared and before the daemon starts; deploy/'s daemon unit runs ``python -m ignite_dagster.defs.pools``
as ExecStartPre. The limit written is dagster.yaml's ``concurrency.pools.default_limit``, and only for a
pool that has no explicit limit yet: a limit set later with ``dagster instance concurrency set <pool> N``
stays. The row is written as an explicit limit, so Dagster never re-initialises it from the default at run
time (so a changed default_limit applies to new pools only; change an existing one with that command).
"""

from __future__ import annotations

from dagster import DagsterInstance

from ignite_dagster.defs.courses.keys import MODEL_POOL

# Every pool an op of this code location declares (tests/integration/test_pools.py checks the Definitions against it).
POOLS: tuple[str, ...] = (MODEL_POOL,)


def set_pool_limits(instance: DagsterInstance) -> dict[str, int]:
    """Give every pool in POOLS without a limit the instance's default limit; returns pool → limit in force.

    Fails loudly when dagster.yaml sets no ``pools.default_limit``: a pool without a limit is unbounded,
    which is not what the ops declaring it ask for."""
    default = instance.global_op_concurrency_default_limit
    if default is None:
        raise RuntimeError("dagster.yaml sets no concurrency.pools.default_limit: the limit of the pools "
                           f"{', '.join(POOLS)} must come from it")
    storage = instance.event_log_storage
    current = {p.name: p for p in storage.get_pool_limits()}
    in_force = {}
    for pool in POOLS:
        limit = current.get(pool)
        # no row yet, or one Dagster created lazily from a default (it would re-create it at run time)
        if limit is None or limit.from_default:
            storage.set_concurrency_slots(pool, default)
            in_force[pool] = default
        else:  # set explicitly (by an earlier start or by an operator): it stays
            in_force[pool] = limit.limit
    return in_force


def main() -> int:
    """``python -m ignite_dagster.defs.pools``: set the pools of the instance in DAGSTER_HOME (deploy/)."""
    with DagsterInstance.get() as instance:
        for pool, limit in set_pool_limits(instance).items():
            print(f"pool {pool}: limit {limit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
