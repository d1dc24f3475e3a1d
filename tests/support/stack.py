"""A real Dagster stack for end-to-end tests: fresh database, own DAGSTER_HOME and storage, the real
daemon (which starts the code server and launches runs as separate processes)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ignite_dagster.config import load_settings
from ignite_dagster.local.stack import Stack, prepare_instance

FAST_TIMINGS = {
    "IGNITE_SENSOR_INTERVAL_SECONDS": "1",
    "IGNITE_HEARTBEAT_SECONDS": "2",
    "IGNITE_BACKOFF_BASE_SECONDS": "0",
    "IGNITE_BACKOFF_CAP_SECONDS": "0",
}


def start_stack(db_url: str, home: Path, extra_env: dict[str, str] | None = None,
                instance_blocks: Sequence[str] = ()) -> Stack:
    """Prepare the instance (migrations, dagster.yaml plus ``instance_blocks``, the pools) and start the daemon."""
    env = {"DATABASE_URL": db_url, "IGNITE_HOME": str(home), "IGNITE_STORAGE_ROOT": str(home / "storage"),
           "IGNITE_ENV": "test", **FAST_TIMINGS, **(extra_env or {})}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = load_settings()
        full_env = prepare_instance(settings, dagster_home=home / "dagster", extra_env=env,
                                    instance_blocks=instance_blocks)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (home / "logs").mkdir(parents=True, exist_ok=True)
    stack = Stack(full_env, log_dir=home / "logs")
    stack.start_daemon()
    return stack


def wait_until(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.25, stack: Stack | None = None):
    """Poll a condition on real state (job rows, files) until it holds; fail with the daemon log tail."""
    deadline = time.monotonic() + timeout
    died = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if stack is not None:
            died = [name for name, p in stack.procs.items() if p.poll() is not None]
            if died:
                break
        time.sleep(poll)
    tail = f" ({', '.join(died)} exited)" if died else ""
    if stack is not None and stack.log_dir is not None:
        log = stack.log_dir / "daemon.log"
        if log.exists():
            tail += "\n--- daemon.log tail ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:])
    raise AssertionError(f"gave up waiting for {what} (limit {timeout:.0f}s){tail}")
