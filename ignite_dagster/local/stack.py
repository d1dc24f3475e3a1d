"""Starting the local stack: database, migrations, Dagster instance folder, daemon and webserver.

Used by `ignite dev`, `ignite demo` and the end-to-end tests, so the demo and the tests go through the
same sensors, runs and assets as production, never a shortcut.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ignite_dagster import db
from ignite_dagster.config import REPO_ROOT, Settings

WORKSPACE = REPO_ROOT / "workspace.yaml"
INSTANCE_YAML = REPO_ROOT / "dagster.yaml"


def prepare_instance(settings: Settings, dagster_home: Path | None = None, extra_env: dict[str, str] | None = None,
                     instance_blocks: Sequence[str] = ()) -> dict[str, str]:
    """Database up and migrated, DAGSTER_HOME holding dagster.yaml (plus ``instance_blocks``, e.g. deploy/'s
    Celery run launcher), the concurrency pools set; returns the environment for children.

    The pools are set here, before any daemon can start a run (``set_pools``)."""
    from ignite_dagster.local.embedded import resolve_database_url

    url = resolve_database_url(settings)
    db.migrate(url)
    home = Path(dagster_home or os.environ.get("DAGSTER_HOME") or settings.home / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("\n".join([INSTANCE_YAML.read_text(), *instance_blocks]))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        DAGSTER_HOME=str(home),
        IGNITE_MAX_CONCURRENT_RUNS=str(settings.max_concurrent_runs),
        IGNITE_HOME=str(settings.home),
    )
    if settings.storage_backend == "local":
        env["IGNITE_STORAGE_ROOT"] = str(settings.local_storage_root())
    env.update(extra_env or {})
    set_pools(env)
    return env


def set_pools(env: dict[str, str]) -> None:
    """Write the instance's concurrency pool limits before the first run (ignite_dagster/defs/pools.py says
    why: Dagster's lazy set-up collides when two first runs start together). A process of its own, the
    command deploy/'s daemon unit runs, because this layer imports no Dagster."""
    done = subprocess.run([sys.executable, "-m", "ignite_dagster.defs.pools"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"setting the instance's concurrency pools failed (python -m ignite_dagster.defs.pools):\n"
                           f"{done.stdout[-1000:]}{done.stderr[-3000:]}")


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the block like Ctrl-C (KeyboardInterrupt), so the stack is stopped the same way.

    ``kill``, systemd, docker and CI send SIGTERM, a closed terminal sends SIGHUP; by default either ends
    this process at once and leaves the daemon, webserver and code servers (their own sessions) running.
    Only the first signal interrupts: a second one while the stack is stopping is ignored, so it cannot cut
    the clean-up short."""
    stop_signals = (signal.SIGTERM, signal.SIGHUP)

    def interrupt(signum, frame):
        for sig in stop_signals:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in stop_signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


class CrashLoop(RuntimeError):
    """A supervised process keeps dying right after it starts: restarting it again would only hide why."""


@dataclass
class Stack:
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    log_dir: Path | None = None
    # every process group ever started (a restarted daemon's old group may still hold its run processes)
    groups: list[int] = field(default_factory=list)
    _args: dict[str, list[str]] = field(default_factory=dict)
    _restarts: dict[str, list[float]] = field(default_factory=dict)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.log", "ab") if self.log_dir else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(args, env=self.env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        self._args[name] = args
        self.groups.append(proc.pid)
        return proc

    def restart_exited(self, max_restarts: int = 5, window_s: float = 60.0) -> list[tuple[str, int]]:
        """Start again every process of the stack that exited; returns (name, exit code) of those.

        What a process supervisor does in production (deploy/): a daemon or webserver that dies is
        restarted, and the runs it launched keep going (they live in the old process group and report to
        the database, not to the daemon). The daemon starts its own code server again. More than
        ``max_restarts`` restarts of one process within ``window_s`` raise CrashLoop."""
        restarted = []
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            now = time.monotonic()
            recent = [t for t in self._restarts.get(name, []) if now - t < window_s] + [now]
            self._restarts[name] = recent
            if len(recent) > max_restarts:
                raise CrashLoop(f"{name} exited {len(recent)} times within {window_s:.0f} s (last exit code {code})")
            self._spawn(name, self._args[name])
            restarted.append((name, code))
        return restarted

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        """Start a process of the stack (own process group, log in log_dir), supervised like the others."""
        return self._spawn(name, args)

    def start_daemon(self) -> subprocess.Popen:
        return self._spawn("daemon", [_bin("dagster-daemon"), "run", "-w", str(WORKSPACE)])

    def start_webserver(self, host: str = "127.0.0.1", port: int = 3000) -> subprocess.Popen:
        return self._spawn("webserver", [_bin("dagster-webserver"), "-w", str(WORKSPACE), "-h", host, "-p", str(port)])

    def stop(self, grace: float = 10.0) -> None:
        """Stop every process group we started, and make sure nothing of them is left.

        The daemon's code server (``dagster api grpc``) and its run processes live in the daemon's
        process group (start_new_session). The code server sometimes swallows the first SIGTERM (it
        arrives while Dagster captures interrupts) and would linger after the daemon is gone, so the groups
        are signalled again every second and killed after ``grace`` seconds."""
        groups = list(dict.fromkeys(self.groups))  # each pid leads its own group
        deadline = time.monotonic() + grace
        next_term = 0.0
        while groups := [g for g in groups if _signal_group(g, 0)]:
            now = time.monotonic()
            if now > deadline:
                for group in groups:
                    _signal_group(group, signal.SIGKILL)
                break
            if now >= next_term:
                for group in groups:
                    _signal_group(group, signal.SIGTERM)
                next_term = now + 1.0
            for proc in self.procs.values():  # reap our direct children so their groups can empty
                proc.poll()
            time.sleep(0.2)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(group: int, sig: int) -> bool:
    """Send ``sig`` to a process group (0: just probe); False when no process of the group is left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
