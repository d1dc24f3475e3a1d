"""The demo's share of the local stack: prepare the instance, start the daemon (and the UI with
``--keep-running``), stop them on every exit path, and the parts of their logs this session wrote.

The lifecycle itself is ``ignite_dagster.local.stack`` (``prepare_instance``, ``Stack``), the same code
``ignite dev`` and the end-to-end tests use; this module adds what only the demo needs: a marker line in
each log and its offset (so a failure prints the log of *this* start, not of earlier ones), and the
checks of the UI's port.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from ignite_dagster.config import Settings
from ignite_dagster.local.stack import Stack, prepare_instance


class DemoFatal(Exception):
    """A setup step failed; the message says what to do (printed without a traceback, exit status 2)."""


def redact(url: str) -> str:
    """DATABASE_URL for display: the password hidden."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def prepare(settings: Settings) -> dict[str, str]:
    """Database up and migrated, the Dagster instance folder written (``prepare_instance``); returns the
    environment of the daemon. A database that cannot be reached is a DemoFatal saying where to look."""
    import psycopg

    try:
        return prepare_instance(settings)
    except psycopg.OperationalError as exc:
        s = settings
        where = f"DATABASE_URL ({redact(s.database_url)})" if s.database_url else "the embedded Postgres"
        hint = ("unset DATABASE_URL to use the embedded Postgres under IGNITE_HOME" if s.database_url
                else f"see {s.home / 'pgdata' / 'log'} or start over with a fresh IGNITE_HOME")
        raise DemoFatal(f"cannot connect to {where}: {str(exc).strip()}\n{hint}") from exc


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def ui_ready(host: str, port: int) -> bool:
    try:
        return httpx.get(f"http://{host}:{port}/server_info", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class DemoStack:
    """The processes one demo started (``Stack``), with the offset in each log where this start began."""

    def __init__(self, env: dict[str, str], log_dir: Path, tag: str):
        self.stack = Stack(env, log_dir=log_dir)
        self.log_dir = log_dir
        self.tag = tag
        self.log_offsets: dict[str, int] = {}

    @property
    def procs(self):
        return self.stack.procs

    def start(self, webserver: tuple[str, int] | None = None) -> None:
        """The daemon, and the webserver on (host, port) when given."""
        for name in ["daemon"] + (["webserver"] if webserver else []):
            log = self.log_dir / f"{name}.log"
            with open(log, "ab") as f:
                f.write(f"\n===== ignite demo {self.tag}: starting {name} =====\n".encode())
            self.log_offsets[name] = log.stat().st_size
        self.stack.start_daemon()
        if webserver:
            self.stack.start_webserver(*webserver)

    def stop(self, grace: float = 10.0) -> None:
        """Every process group started, with their children (``Stack.stop``)."""
        self.stack.stop(grace)

    def log_tail(self, name: str, lines: int = 25) -> tuple[Path, list[str]]:
        """The log of ``name`` and its last ``lines`` lines written since this demo started it."""
        log = self.log_dir / f"{name}.log"
        if not log.exists():
            return log, []
        with open(log, "rb") as f:
            f.seek(self.log_offsets.get(name, 0))
            text = f.read().decode(errors="replace")
        return log, text.splitlines()[-lines:]
