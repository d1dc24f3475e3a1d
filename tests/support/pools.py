"""A job whose op takes a slot of the model pool, for the pool set-up test (importable by reconstructable)."""

from __future__ import annotations

from dagster import in_process_executor, job, op

from ignite_dagster.defs.courses.keys import MODEL_POOL


@op(pool=MODEL_POOL)
def _pooled_step() -> int:
    return 1


@job(executor_def=in_process_executor)
def pooled_job():
    """One step in the pool the fill and repair ops use, executed in the run's process like theirs."""
    _pooled_step()


def run_pooled_job(dagster_home: str, database_url: str, barrier, results) -> None:
    """In a process of its own: wait for the others at ``barrier``, execute one run on the instance and put
    (success, failure message) on ``results``."""
    import os

    from dagster import DagsterInstance, execute_job, reconstructable

    os.environ["DATABASE_URL"] = database_url
    try:
        with DagsterInstance.from_config(dagster_home) as instance:
            barrier.wait(60)
            with execute_job(reconstructable(pooled_job), instance=instance, raise_on_error=False) as result:
                results.put((result.success, next((e.message for e in result.all_events if e.is_failure), "")))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
        results.put((False, f"{type(exc).__name__}: {exc}"))
