"""`ignite demo`'s "sensors ticking" read (``ignite_dagster/defs/sensor_ticks.py``): the newest sensor tick,
through the Dagster instance's API, on an instance prepared the way the demo prepares its own."""

from __future__ import annotations

import time

from dagster import DagsterInstance
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, TickData, TickStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ignite_dagster.config import load_settings
from ignite_dagster.defs.sensor_ticks import open_sensor_ticks
from ignite_dagster.local.stack import prepare_instance


def _record_tick(instance: DagsterInstance, sensor: str, timestamp: float) -> None:
    """What the daemon's sensor loop stores for a sensor running by default: its state, then a tick."""
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="ignite_dagster.definitions"))
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), sensor)
    state = instance.get_instigator_state(origin.get_id(), origin.get_selector().get_id()) or \
        instance.add_instigator_state(InstigatorState(origin, InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE))
    instance.create_tick(TickData(instigator_origin_id=state.instigator_origin_id, instigator_name=sensor,
                                  instigator_type=InstigatorType.SENSOR, status=TickStatus.SKIPPED,
                                  timestamp=timestamp, selector_id=state.selector_id))


def test_the_newest_tick_of_any_sensor_is_read_without_database_url_in_the_environment(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IGNITE_HOME", str(tmp_path))
    monkeypatch.setenv("IGNITE_ENV", "test")
    home = str(tmp_path / "dagster")
    prepare_instance(load_settings(), dagster_home=tmp_path / "dagster")
    with DagsterInstance.from_config(home) as instance:
        monkeypatch.delenv("DATABASE_URL")  # the demo's own process may not export the embedded Postgres
        with open_sensor_ticks(home, db_url) as ticks:
            assert ticks.newest() == 0.0  # no sensor has ticked yet
            now = time.time()
            _record_tick(instance, "course_jobs_sensor", now - 5)
            _record_tick(instance, "media_jobs_sensor", now)
            _record_tick(instance, "course_jobs_sensor", now - 2)
            assert ticks.newest() == now
