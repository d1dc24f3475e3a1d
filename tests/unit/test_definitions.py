"""The code location's shape: loaded from defs/, the same named jobs, sensors, schedules, assets and
checks, and no environment read when its modules are imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

JOBS = {"__ASSET_JOB", "dead_letter", "generate_courses", "generate_media", "mark_stale", "reconcile_queue",
        "report_course_drift", "requeue_jobs"}
SENSORS = {"course_jobs_sensor", "course_materialization_canceled_sensor", "course_materialization_failure_sensor",
           "course_run_canceled_sensor", "course_run_failure_sensor", "media_jobs_sensor", "media_run_canceled_sensor",
           "media_run_failure_sensor"}
SCHEDULES = {"dead_letter_every_5_minutes", "mark_stale_every_minute", "reconcile_every_minute",
             "report_course_drift_every_10_minutes"}
ASSETS = {"course_content", "course_media", "course_metadata"}
CHECKS = {"course_quality", "course_schema_valid", "media_complete"}


def test_the_code_location_holds_every_named_definition(monkeypatch):
    from ignite_dagster.definitions import defs

    monkeypatch.setenv("IGNITE_SENSOR_INTERVAL_SECONDS", "7")
    monkeypatch.setenv("IGNITE_COURSES_PER_RUN", "3")
    repo = defs().get_repository_def()
    assert set(repo.job_names) == JOBS
    assert {s.name for s in repo.sensor_defs} == SENSORS
    assert {s.name for s in repo.schedule_defs} == SCHEDULES
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == ASSETS
    assert {k.name for k in repo.asset_graph.asset_check_keys} == CHECKS
    assert set(repo.get_top_level_resources()) >= {"queue", "storage", "model", "io_manager"}
    # the settings are read when the code location loads
    assert repo.get_sensor_def("course_jobs_sensor").minimum_interval_seconds == 7
    policy = repo.assets_defs_by_key[next(k for k in repo.asset_graph.get_all_asset_keys()
                                          if k.to_user_string() == "course_content")].backfill_policy
    assert policy.max_partitions_per_run == 3


def test_importing_the_code_location_reads_no_settings():
    """A setting that cannot be parsed fails only when the definitions are built, not at import."""
    code = ("import pkgutil, importlib, ignite_dagster.defs as d\n"
            "import ignite_dagster.definitions as m\n"
            "for info in pkgutil.walk_packages(d.__path__, 'ignite_dagster.defs.'):\n"
            "    importlib.import_module(info.name)\n"
            "try:\n"
            "    m.defs()\n"
            "except Exception as exc:\n"
            "    while exc.__cause__ is not None and 'IGNITE_SENSOR_INTERVAL' not in str(exc):\n"
            "        exc = exc.__cause__\n"
            "    print(type(exc).__name__)\n")
    env = dict(os.environ, IGNITE_SENSOR_INTERVAL_SECONDS="often")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ConfigError"  # defs() refused the setting
