"""Counting the factory's round trips to Postgres: every statement a cursor sends and every transaction
command (BEGIN, COMMIT, SAVEPOINT ...) a connection sends, on any connection of the process (the
queue's own, the run's pool, persist's transaction).

Why count at psycopg's two entry points rather than at the server: the server's statistics are
flushed lazily and mix in other sessions, while these two methods are where every one of our
round trips starts, whichever connection or pool it goes through. The count wraps the real methods and
calls through; nothing is stubbed.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import _connection_base


def _label(query: Any) -> str:
    """A short name for a statement: the function a ``SELECT f(...)`` calls, else its first words."""
    text = query if isinstance(query, str) else getattr(query, "decode", lambda: str(query))()
    text = " ".join(str(text).split())
    called = re.match(r"SELECT (?:\* FROM )?([a-z_]+)\(", text, re.IGNORECASE)
    return called.group(1) if called else text[:60]


class StatementCount:
    """Round trips seen while counting, in total and by label (``SELECT complete_job(...)`` → complete_job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_label: Counter[str] = Counter()

    def add(self, query: Any) -> None:
        with self._lock:
            self.by_label[_label(query)] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.by_label.values())

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.by_label)

    def __str__(self) -> str:
        rows = ", ".join(f"{k} {n}" for k, n in sorted(self.snapshot().items(), key=lambda kv: (-kv[1], kv[0])))
        return f"{self.total} round trips ({rows})"


@contextmanager
def counting_statements() -> Iterator[StatementCount]:
    """Count every statement and transaction command sent by this process until the block ends."""
    count = StatementCount()
    cursor_execute = psycopg.Cursor.execute
    cursor_executemany = psycopg.Cursor.executemany
    exec_command = _connection_base.BaseConnection._exec_command

    def execute(self, query, params=None, **kw):
        count.add(query)
        return cursor_execute(self, query, params, **kw)

    def executemany(self, query, params_seq, **kw):
        count.add(query)
        return cursor_executemany(self, query, params_seq, **kw)

    def command(self, cmd, *args, **kw):
        count.add(cmd)
        return exec_command(self, cmd, *args, **kw)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
    _connection_base.BaseConnection._exec_command = command  # type: ignore[method-assign]
    try:
        yield count
    finally:
        psycopg.Cursor.execute = cursor_execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = cursor_executemany  # type: ignore[method-assign]
        _connection_base.BaseConnection._exec_command = exec_command  # type: ignore[method-assign]
