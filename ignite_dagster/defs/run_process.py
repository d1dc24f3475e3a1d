"""What a run's process settles at its first step (``settle_run_process``): the garbage collector and the
Dagster instance's storage connections.

**The collector.** A run's process holds ~270,000 long-lived objects before its first op runs (Dagster,
the SDKs, the definitions). A full (generation 2) collection during the run walks all of them: measured
in a 10-course model-path run, one such pause took 170–190 ms, stopping the model loop, every course
thread and the reporting step at once; with those objects frozen (``gc.freeze``) the same collection
took 32 ms. Frozen objects are still freed by reference counting; only cycles among them would stay,
and what a process imports and defines lives as long as the process anyway. Once per process, at the
first run's start: a process that runs many runs (a Celery worker, a test session, a benchmark) would
otherwise freeze the cyclic garbage of its earlier runs too, which would never be collected.

**The storage connections.** dagster-postgres opens a new Postgres connection for every storage call
(``NullPool``: Dagster's default outside the webserver, so idle processes hold none), and a run's
process makes several per event: inserting it, the asset's index, the check's row. Measured in
``bench/run_fill_bench.py --instance postgres`` (production's dagster.yaml): 85 connections for a
one-course model run, each ~6 ms; a 10-course run took 2.15–2.63 s, one course 1.36–1.45 s. A run's
process is short-lived and writes events all the time, so it holds its connections for the run as the
webserver does (``DagsterInstance.optimize_for_webserver``, the one public switch for it: one pooled
connection per storage, a few more while calls overlap): side by side, 1.49–2.01 s and 1.16–1.24 s. Once per instance; an
instance whose storage is not Postgres (a test's in-memory one) is left as it is. The price: a pooled
connection that Postgres dropped (a restart) fails the one call that finds it, where a fresh connection
per call would have found the server back; the pool then replaces it, and a run that failed so is
handed back like any failed run (``defs/queue_sensors``' run-failure sensor).

A process that runs many runs (a Celery worker: a new instance per run) would keep each finished run's
pooled connections until a garbage collection found the instance: Dagster's ``dispose`` leaves the
engines open, and the instance sits in reference cycles. So holding a run's connections first closes
those the process held for earlier runs (``release_storage_connections``; an engine whose pool is
closed opens new connections if its run still calls, so this is safe while one still runs): a process
keeps at most one finished run's idle connections, measured in
``tests/integration/test_run_storage_connections.py``.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

_lock = threading.Lock()
_frozen = False
_held: weakref.WeakSet[Any] = weakref.WeakSet()

# a pooled connection older than this is replaced when next checked out (bounds what a long run holds)
POOL_RECYCLE_SECONDS = 300
# connections beyond the pooled one while calls overlap (a run's steps and its monitoring); closed after use
POOL_MAX_OVERFLOW = 8


def settle_run_process(instance: Any) -> None:
    """At a run's first step: freeze what the process loaded (once per process) and hold the instance's
    storage connections for the run (once per instance)."""
    freeze_long_lived_once()
    hold_storage_connections(instance)


def freeze_long_lived_once() -> bool:
    """Freeze everything allocated so far, the first time this process calls it; True when it did."""
    global _frozen
    with _lock:
        if _frozen:
            return False
        gc.freeze()
        _frozen = True
        return True


def on_postgres(instance: Any) -> bool:
    """Whether the instance's run and event storage are dagster-postgres' (the only ones pooled here)."""
    try:
        from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
    except ImportError:  # pragma: no cover - dagster-postgres is a dependency; without it nothing is pooled
        return False
    return isinstance(instance.run_storage, PostgresRunStorage) and isinstance(instance.event_log_storage,
                                                                               PostgresEventLogStorage)


def hold_storage_connections(instance: Any) -> bool:
    """Pool the instance's Postgres storage connections, the first time it is called for ``instance``,
    after closing those held for earlier instances of this process; True when it did (see the module
    docstring)."""
    with _lock:
        if instance in _held or not on_postgres(instance):
            return False
        for earlier in list(_held):
            release_storage_connections(earlier)
            _held.discard(earlier)
        # statement_timeout 0: a run's calls keep Postgres' own (none), as they had without the pool
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS,
                                        max_overflow=POOL_MAX_OVERFLOW)
        _held.add(instance)
        return True


def release_storage_connections(instance: Any) -> None:
    """Close the idle connections of the instance's storage engines (``Engine.dispose``: the engine stays
    usable). Dagster has no public call for it: the storages' engines are their ``_engine``."""
    for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
        engine = getattr(storage, "_engine", None)
        if engine is not None:
            engine.dispose()
