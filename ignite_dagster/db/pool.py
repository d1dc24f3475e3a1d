"""Postgres connections: one shape (autocommit, dict rows) for every process of the factory."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


def connect(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url, row_factory=dict_row, **kwargs)


def make_pool(url: str, max_size: int = 10, min_size: int = 1, name: str = "ignite") -> ConnectionPool:
    """A pool that hands out autocommit, dict-row connections (queue calls are single statements)."""

    def configure(conn: psycopg.Connection) -> None:
        conn.autocommit = True
        conn.row_factory = dict_row

    pool = ConnectionPool(url, min_size=min_size, max_size=max_size, configure=configure, name=name, open=False)
    pool.open(wait=True, timeout=30)
    return pool
