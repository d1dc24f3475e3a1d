"""When did the instance's sensors last tick? Read through the Dagster instance, for ``ignite demo``.

The demo says "Dagster daemon up, sensors ticking" once the daemon's sensor loop records a tick after the
demo started it. That is instance state (its schedule storage), so it is read here with the instance's
API (the sensors' stored ``InstigatorState`` and ``get_ticks``), never from Dagster's own tables
(``job_ticks``), whose layout is Dagster's to change between versions.

Why a module of the Dagster layer serves the CLI: only this layer imports dagster (the contract
"Only the Dagster layer imports dagster" in pyproject.toml), and the demo's watcher is the one place
above it that needs a Dagster read. pyproject.toml lets exactly that import through
(``ignite_dagster.cli.demo.watching -> ignite_dagster.defs.sensor_ticks``, an ``ignore_imports`` entry of
the contract, which stays in force for every other CLI module); the watcher imports this module only when
it first needs a tick (the daemon just started and some job is not finished), so ``ignite`` still starts
without importing dagster, and a demo whose jobs had all finished never imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import DagsterInstance
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.instance.ref import InstanceRef


class SensorTicks:
    """The sensors' ticks of one instance (a DagsterInstance held open while the demo watches)."""

    def __init__(self, instance: DagsterInstance):
        self._instance = instance

    def newest(self) -> float:
        """The timestamp of the newest tick of any sensor, 0.0 before any sensor has ticked.

        A sensor's state is stored when it first ticks (a sensor running by default has none before), so
        before the daemon's first tick there is nothing to read, and 0.0 says so."""
        newest = 0.0
        for state in self._instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            ticks = self._instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            if ticks:
                newest = max(newest, ticks[0].timestamp)
        return newest


@contextmanager
def open_sensor_ticks(dagster_home: str, database_url: str) -> Iterator[SensorTicks]:
    """The sensor ticks of the instance in ``dagster_home`` (its dagster.yaml), on ``database_url``.

    dagster.yaml takes the database from the environment (``DATABASE_URL``), which in the demo's own
    process may be unset (the embedded Postgres is resolved, not exported): the URL is given here instead,
    as an override of that one setting."""
    ref = InstanceRef.from_dir(dagster_home, overrides={"storage": {"postgres": {"postgres_url": database_url}}})
    with DagsterInstance.from_ref(ref) as instance:
        yield SensorTicks(instance)
