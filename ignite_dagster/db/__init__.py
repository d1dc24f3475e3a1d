"""The database: connections (``pool``) and the schema (``migrations`` of the top-level ``sql/``, ``schema``)."""

from ignite_dagster.db.migrations import SchemaError, check, migrate, migrations, pending_migrations
from ignite_dagster.db.pool import connect, make_pool

__all__ = ["SchemaError", "check", "connect", "make_pool", "migrate", "migrations", "pending_migrations"]
