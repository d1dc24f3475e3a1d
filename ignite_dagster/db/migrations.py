"""The migrations runner.

Migrations are the numbered plain-SQL files of the repository's top-level ``sql/`` (sql/README.md), shipped
inside the package as ``ignite_dagster.sql`` (setup.py) and read with :mod:`importlib.resources`, so an
installed wheel migrates exactly like a source checkout.
Each is applied once, in its own transaction, under a session advisory lock so that two services starting
together never race; ``check`` lets every service refuse to start against a schema that is missing or behind,
with a message that says what to run.

An applied migration is never edited: its checksum is stored when it is applied, and both ``migrate`` and
``check`` refuse a database whose stored checksum differs from the file's, naming the file. Otherwise an
edit would reach fresh databases only, and two databases "up to date" with the same code would differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import psycopg

SQL_DIR: Traversable = files("ignite_dagster.sql")
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


def _refuse_edited(found: list[Migration], applied: dict[str, str]) -> None:
    """Raise SchemaError when an applied migration's file no longer has the checksum it was applied with."""
    changed = [m for m in found if m.version in applied and applied[m.version] != m.checksum]
    if not changed:
        return
    m = changed[0]
    raise SchemaError(
        f"migration {m.path.name} was applied to this database with checksum {applied[m.version]} but the file "
        f"now has checksum {m.checksum}: applied migrations must not be edited"
        + (f" (also changed: {', '.join(c.path.name for c in changed[1:])})" if changed[1:] else "")
        + f". Restore {m.path.name} as it was applied and put the change in a new numbered migration. If the "
        "database was migrated by a development build and its schema is known to match the file, record the "
        f"file's checksum: UPDATE schema_migrations SET checksum = '{m.checksum}' WHERE version = '{m.version}'"
    )


def _applied(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def migrate(url: str, sql_dir: Traversable = SQL_DIR) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call (empty when up to date).

    Raises SchemaError, applying nothing, when an applied migration's file has changed."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(_CREATE_TABLE)
            found = migrations(sql_dir)
            done = _applied(conn)
            _refuse_edited(found, done)
            for m in found:
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
    """The versions not applied yet. Raises SchemaError when an applied migration's file has changed."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
        done = _applied(conn) if exists else {}
    found = migrations(sql_dir)
    _refuse_edited(found, done)
    return [m.version for m in found if m.version not in done]


def check(url: str, sql_dir: Traversable = SQL_DIR) -> None:
    """Raise SchemaError naming the pending migrations, or the applied migration whose file was edited;
    every service calls this at start-up."""
    try:
        pending = pending_migrations(url, sql_dir)
    except psycopg.OperationalError as exc:
        raise SchemaError(f"cannot reach the database: {exc}".strip()) from exc
    if pending:
        raise SchemaError(
            f"database schema is behind: {len(pending)} pending migration(s) ({', '.join(pending)}); "
            "run `ignite db migrate`"
        )
