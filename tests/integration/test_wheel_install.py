"""The package as a user installs it: a built wheel (not the source tree, not editable) migrates an empty
database, and a wheel that lost its SQL files refuses to migrate instead of saying "up to date".

The wheel is built from a copy of the sources (the working tree gets no build/ or egg-info) with the
project's own setuptools, installed ``--no-deps`` into a folder of its own, and run from a directory
outside the repository with that folder on PYTHONPATH: the dependencies come from the project's venv,
``ignite_dagster`` only from the wheel (the test checks which one was imported).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]  # tests/<kind>/this file


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A site folder holding ignite_dagster installed from a freshly built wheel."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ("ignite_dagster", "sql"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = base / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--disable-pip-version-check", "-q", "-w", str(dist), str(src)], cwd=base)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("ignite_dagster-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("ignite_dagster/sql/") and n.endswith(".sql") for n in names), names
    site = base / "site"
    done = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q",
                 "--target", str(site), str(wheel)], cwd=base)
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def _ignite(site: Path, cwd: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IGNITE_", "DATABASE_URL", "PYTHON"))}
    env.update(PYTHONPATH=str(site), DATABASE_URL=database_url, IGNITE_HOME=str(cwd / "home"))
    where = _run([sys.executable, "-c", "import ignite_dagster; print(ignite_dagster.__file__)"], cwd=cwd, env=env)
    assert where.returncode == 0 and where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    return _run([sys.executable, "-m", "ignite_dagster.cli.main", *args], cwd=cwd, env=env)


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_the_installed_wheel_migrates_an_empty_database(installed, postgres, tmp_path):
    url = postgres.create_database(migrate=False)
    assert _tables(url) == set()
    first = _ignite(installed, tmp_path, url, "db", "migrate")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith("applied: 001_schema")
    assert {"ai_course_jobs", "ai_media_jobs", "course_metadata", "schema_migrations"} <= _tables(url)
    again = _ignite(installed, tmp_path, url, "db", "migrate")
    assert (again.returncode, again.stdout.strip()) == (0, "schema is up to date")


def test_a_wheel_without_its_sql_files_refuses_to_migrate(installed, postgres, tmp_path):
    broken = tmp_path / "site"
    shutil.copytree(installed, broken)
    for sql in (broken / "ignite_dagster/sql").glob("*.sql"):
        sql.unlink()
    url = postgres.create_database(migrate=False)
    out = _ignite(broken, tmp_path, url, "db", "migrate")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no migration files found" in out.stderr and "up to date" not in out.stdout
    assert not _tables(url) - {"schema_migrations"}
