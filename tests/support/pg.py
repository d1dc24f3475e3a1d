"""Postgres for tests: the machine's server when reachable (closer to production), else embedded pgserver.

Every test run gets its own databases (the shared server outlives sessions): one migrated template per
run, and per-test databases cloned from it, all dropped at the end.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import psycopg.conninfo

from ignite_dagster import db

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


class TestPostgres:
    """Owns the admin connection target and every database a test run created."""

    def __init__(self) -> None:
        self._embedded = None
        admin = os.environ.get("IGNITE_TEST_ADMIN_URL")
        force_embedded = os.environ.get("IGNITE_TEST_EMBEDDED") == "1"  # what a fresh machine without Postgres does
        if not admin and not force_embedded and _reachable(LOCAL_SERVER):
            admin = LOCAL_SERVER
        if not admin:
            import pgserver

            self._tmp = tempfile.mkdtemp(prefix="ignite-test-pg-")
            self._embedded = pgserver.get_server(Path(self._tmp), cleanup_mode="delete")
            admin = self._embedded.get_uri("postgres")
        self.admin_url = admin
        self.run_tag = uuid.uuid4().hex[:8]
        self.created: list[str] = []
        self.template = self.create_database(migrate=True, name=f"ignite_t_{self.run_tag}_tmpl")

    @property
    def kind(self) -> str:
        return "embedded" if self._embedded else "server"

    def url_for(self, name: str) -> str:
        """A URL (not a key=value conninfo): Dagster's storage parses it with SQLAlchemy."""
        parts = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        user = quote(parts.get("user") or "postgres")
        password = f":{quote(parts['password'])}" if parts.get("password") else ""
        host = parts.get("host") or ""
        if host.startswith("/"):  # unix socket (embedded pgserver)
            return f"postgresql://{user}{password}@/{name}?host={quote(host)}"
        return f"postgresql://{user}{password}@{host}:{parts.get('port') or 5432}/{name}"

    def create_database(self, migrate: bool = True, name: str | None = None, template: str | None = None) -> str:
        name = name or f"ignite_t_{self.run_tag}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            tmpl = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
        self.created.append(name)
        url = self.url_for(name)
        if migrate and not template:
            db.migrate(url)
        return url

    def fresh(self) -> str:
        """A new, migrated database cloned from this run's template (fast)."""
        return self.create_database(template=f"ignite_t_{self.run_tag}_tmpl")

    def close(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in reversed(self.created):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self._embedded is not None:
            self._embedded.cleanup()
