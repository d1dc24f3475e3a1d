"""The embedded Postgres used by dev, demo and tests when no DATABASE_URL is set.

pgserver ships the server binaries in a wheel, so a fresh machine with only Python can run the whole
factory. The server is left running between commands (the Dagster daemon, the webserver and each run
process all connect to it); ``ignite dev --stop`` or ``stop_embedded`` stops it. Production never comes
here: ``resolve_database_url`` refuses.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import psycopg

from ignite_dagster.config import ConfigError, Settings

EMBEDDED_DB = "ignite"


def _server(home: Path):
    # pgserver's platformdirs warns about an unset XDG_RUNTIME_DIR (containers, CI); harmless here.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver  # imported lazily: it costs start-up time and is not needed with DATABASE_URL

    home.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(home / "pgdata", cleanup_mode=None)


def ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def start_embedded(home: Path, database: str = EMBEDDED_DB) -> str:
    """Start (or reuse) the embedded server under ``home`` and return a URL for ``database``."""
    server = _server(home)
    ensure_database(server.get_uri("postgres"), database)
    return server.get_uri(database)


def stop_embedded(home: Path, timeout: float = 30.0) -> bool:
    """Fast shutdown of the embedded server (SIGINT to the postmaster; pg_ctl refuses to run as root,
    and pgserver runs the server as its own user then)."""
    pidfile = home / "pgdata" / "postmaster.pid"
    if not pidfile.exists():
        return False
    pid = int(pidfile.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    raise RuntimeError(f"embedded Postgres (pid {pid}) did not stop within {timeout:.0f}s")


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL when set; otherwise (dev/test only) the embedded server, exported for child processes."""
    if settings.database_url:
        return settings.database_url
    if settings.env == "production":
        raise ConfigError("production", ["DATABASE_URL"])
    url = start_embedded(settings.home)
    os.environ["DATABASE_URL"] = url
    return url
