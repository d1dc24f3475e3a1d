from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.support.pg import TestPostgres


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
