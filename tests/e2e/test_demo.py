"""`ignite demo` as a user runs it: a subprocess that starts the real Dagster daemon, enqueues the demo
courses, waits for them and prints the summary. Kept on the test database (DATABASE_URL) so it is
isolated; the embedded-Postgres path is what the README's `python3 dev.py demo` exercises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest

from ignite_dagster.cli.demo.scenario import OFFLINE_COURSES
from ignite_dagster.course.model import parse_course
from ignite_dagster.course.validation import validate_course

pytestmark = pytest.mark.e2e

COURSE_IDS = {c.course_id for c in OFFLINE_COURSES}
# Everything that could point the demo somewhere else than this test's database and folder.
FOREIGN = ("DAGSTER_HOME", "IGNITE_STORAGE_ROOT", "STORAGE_BACKEND", "OPENAI_API_KEY", "OPENAI_BASE_URL",
           "IGNITE_TEXT_MODEL", "IGNITE_ENV")


def _ignite() -> str:
    local = Path(sys.executable).parent / "ignite"
    return str(local) if local.exists() else "ignite"


def _demo(env: dict[str, str], *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([_ignite(), "demo", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _processes_using(dagster_home: Path) -> list[str]:
    """Processes (the daemon, its code server, run workers) still running on this test's instance."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("DAGSTER_HOME") == str(dagster_home):
                found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:120]}")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_demo_generates_every_course_through_the_daemon_and_prints_the_summary(db_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(DATABASE_URL=db_url, IGNITE_HOME=str(tmp_path), IGNITE_SENSOR_INTERVAL_SECONDS="1", COLUMNS="200")

    proc = _demo(env, "--timeout", "120", "--tag", "t1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    n = len(COURSE_IDS)
    assert f"ignite demo t1: {n}/{n} courses done and valid" in out, out
    assert out.count("✓ valid") == n, out
    for header in ("course", "strategy", "pack", "items", "duration", "path", "status"):
        assert header in out
    for course_id in COURSE_IDS:
        assert f"courses/{course_id}/course.json" in out
    assert "dagster-webserver -w" in out and "/assets/course_content" in out  # how to open the UI
    assert str(tmp_path / "logs" / "daemon.log") in out
    assert not _processes_using(tmp_path / "dagster"), "the demo left processes running"

    with psycopg.connect(db_url) as conn:
        org = conn.execute("SELECT id FROM organizations WHERE slug = 'demo'").fetchone()[0]
        jobs = conn.execute("SELECT id, course_id, status, mode, summary FROM ai_course_jobs WHERE organization_id = %s",
                            (org,)).fetchall()
    assert {j[1] for j in jobs} == COURSE_IDS and len(jobs) == n
    assert {j[2] for j in jobs} == {"done"}
    assert {j[3] for j in jobs} == {"options", "numeric"}
    assert {j[4]["strategy"] for j in jobs} == {"deterministic"}
    for job_id, course_id, *_ in jobs:
        doc = json.loads((tmp_path / "storage" / "courses" / course_id / "course.json").read_text())
        course, issues = parse_course(doc)
        assert course is not None, issues
        assert not [i for i in validate_course(course, None, None) if i.severity == "error"]
        assert doc["generation"]["jobId"] == str(job_id)

    # The same tag again: the idempotency keys replay the finished jobs; nothing is enqueued or started.
    again = _demo(env, "--tag", "t1", timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already finished: nothing to start" in again.stdout
    assert f"{n}/{n} courses done and valid" in again.stdout
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM ai_course_jobs").fetchone()[0] == n
        assert conn.execute("SELECT count(*) FROM organizations WHERE slug = 'demo'").fetchone()[0] == 1
