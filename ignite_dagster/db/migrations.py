"""The migrations runner.

Migrations are the numbered plain-SQL files of ``ignite_dagster/db/sql/``, shipped inside the package and
read with :mod:`importlib.resources`, so an installed wheel migrates exactly like a source checkout.
Each is applied once, in its own transaction, under a session advisory lock so that two services starting together never race; ``check`` lets every
service refuse to start against a schema that is missing or behind, with a message that says what to run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import psycopg

SQL_DIR: Traversable = files("ignite_dagster.db") / "sql"
# Any constant works; it only has to be the same for every process that migrates this database.
MIGRATION_LOCK_KEY = 0x16_417E_D46


class SchemaError(RuntimeError):
    """The database schema is missing or behind the migrations shipped with this code."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Traversable

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def migrations(sql_dir: Traversable = SQL_DIR) -> list[Migration]:
    """The numbered migrations, in order. Finding none is an error, never "up to date": an install that
    lost its SQL files must not report a schema it cannot create."""
    found = sorted((p for p in sql_dir.iterdir() if p.name.endswith(".sql") and p.name[:3].isdigit()),
                   key=lambda p: p.name) if sql_dir.is_dir() else []
    if not found:
        raise SchemaError(f"no migration files found in {sql_dir}: the package is installed without its SQL")
    return [Migration(p.name.removesuffix(".sql"), p) for p in found]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


def migrate(url: str, sql_dir: Traversable = SQL_DIR) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call (empty when up to date)."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(_CREATE_TABLE)
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for m in migrations(sql_dir):
                if m.version in done:
                    continue
                with conn.transaction():
                    conn.execute(m.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (m.version, m.checksum)
                    )
                applied_now.append(m.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def pending_migrations(url: str, sql_dir: Traversable = SQL_DIR) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")} if exists else set()
    return [m.version for m in migrations(sql_dir) if m.version not in done]


def check(url: str, sql_dir: Traversable = SQL_DIR) -> None:
    """Raise SchemaError naming the pending migrations; every service calls this at start-up."""
    try:
        pending = pending_migrations(url, sql_dir)
    except psycopg.OperationalError as exc:
        raise SchemaError(f"cannot reach the database: {exc}".strip()) from exc
    if pending:
        raise SchemaError(
            f"database schema is behind: {len(pending)} pending migration(s) ({', '.join(pending)}); "
            "run `ignite db migrate`"
        )
