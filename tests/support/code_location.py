"""The code location for tests: its Definitions (built per call, from the test's environment) and the
resources a sensor tick needs, bound to the test's own database instead of the environment."""

from __future__ import annotations

from dagster import Definitions

from ignite_dagster.defs.resources import QueueResource


def code_location() -> Definitions:
    """``ignite_dagster.definitions.defs`` evaluated now, as the code server does when it loads."""
    from ignite_dagster.definitions import defs

    return defs()


def tick_resources(db_url: str) -> dict[str, object]:
    """What the queue sensors are injected with, on the test's database (tests/conftest.py's
    ``sensor_resources`` fixture closes the tick pools afterwards)."""
    return {"queue": QueueResource(database_url=db_url)}
