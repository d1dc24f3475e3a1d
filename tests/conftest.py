"""Fixtures every kind of test shares, and the layout rule: a test's folder says what it needs.

    tests/unit         no database, no network, no subprocess servers: seconds (`python3 dev.py test tests/unit`)
    tests/integration  real Postgres, loopback HTTP servers, the API under uvicorn, moto S3, node + npm
    tests/e2e          the real Dagster daemon, the browser, the real model, the crash and Celery tests

Collection marks unit and integration tests by their folder (`-m unit`, `-m integration`); e2e tests keep
their own markers (`e2e`, `browser`, `real_model`, `crash`, `celery`). A unit test that asks for the
database, an e2e test without one of those markers, or such a marker outside tests/e2e stops the run, so
the folders stay true. The Postgres fixtures are session-scoped and lazy: only the first test that asks
for one reaches for the machine's server or starts pgserver, so a unit run never does.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from tests.support.pg import TestPostgres

TESTS = Path(__file__).resolve().parent
MARKED_BY_FOLDER = ("unit", "integration")
E2E_MARKERS = frozenset({"e2e", "browser", "real_model", "crash", "celery"})


def _kind(item: pytest.Item) -> str | None:
    """``unit``, ``integration`` or ``e2e`` for a test under that folder; None for one at tests/ itself."""
    parts = item.path.resolve().relative_to(TESTS).parts
    return parts[0] if len(parts) > 1 and parts[0] in (*MARKED_BY_FOLDER, "e2e") else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Runs before `-m` deselects (conftest hooks run ahead of pytest's own), so `-m unit` sees the marks.
    misplaced = []
    for item in items:
        kind = _kind(item)
        if kind in MARKED_BY_FOLDER:
            item.add_marker(getattr(pytest.mark, kind))
        marks = {m.name for m in item.iter_markers()}
        if kind == "unit" and "postgres" in item.fixturenames:
            misplaced.append(f"{item.nodeid}: a unit test uses the database; it belongs in tests/integration")
        if kind == "e2e" and not marks & E2E_MARKERS:
            misplaced.append(f"{item.nodeid}: a test in tests/e2e needs one of the markers {sorted(E2E_MARKERS)}")
        if kind in MARKED_BY_FOLDER and marks & E2E_MARKERS:
            misplaced.append(f"{item.nodeid}: marked {sorted(marks & E2E_MARKERS)}; it belongs in tests/e2e")
    if misplaced:
        raise pytest.UsageError("tests outside the folder their needs name:\n  " + "\n  ".join(misplaced))


@pytest.fixture(scope="session")
def postgres():
    pg = TestPostgres()
    yield pg
    pg.close()


@pytest.fixture
def db_url(postgres) -> str:
    """A fresh, migrated database of its own for one test."""
    return postgres.fresh()


@pytest.fixture
def org_id(db_url) -> uuid.UUID:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("INSERT INTO organizations (name) VALUES ('Test org') RETURNING id").fetchone()[0]


@pytest.fixture
def sensor_resources(db_url):
    """The resources a sensor tick is injected with, on this test's database; the process-level pool
    ticks share is closed afterwards (the database is dropped at the end of the run)."""
    from ignite_dagster.defs.resources import close_tick_pools
    from tests.support.code_location import tick_resources

    yield tick_resources(db_url)
    close_tick_pools()
