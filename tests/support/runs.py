"""Dagster run helpers shared by the sensor tests."""

from __future__ import annotations

from dagster import DagsterEventType, build_run_status_sensor_context, job, op


@op
def _dies():
    raise RuntimeError("run process died")


@job
def dying_job():
    """A run that fails, carrying whatever tags the test gives it (e.g. the claims it held)."""
    _dies()


def fire_failure_sensor(sensor, instance, result, resources: dict) -> None:
    """Evaluate a run-failure sensor for the failed in-process run ``result``, injected with ``resources``
    (the ``sensor_resources`` fixture)."""
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
    run = instance.get_run_by_id(result.run_id)
    with build_run_status_sensor_context(sensor.name, failure, instance, run, resources=resources).for_run_failure() as context:
        sensor(context)
