"""`ignite dev` as a new user runs it: the whole stack with one command, a course done, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import psutil
import pytest

from ignite_dagster.queue import JobQueue
from tests.support.jobs import new_course
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_ignite_dev_serves_the_ui_runs_a_course_and_stops_on_ctrl_c(db_url, org_id, tmp_path):
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=db_url, IGNITE_HOME=str(tmp_path), IGNITE_SENSOR_INTERVAL_SECONDS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ignite_dagster.cli.main", "dev", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/server_info") or proc.poll() is not None, 120,
                   "the Dagster UI to answer")
        assert proc.poll() is None, proc.stdout.read()
        queue = JobQueue(db_url)
        job = queue.enqueue_course(new_course("addition-dev"), organization_id=org_id).job
        wait_until(lambda: queue.get(job.id).status == "done", 120, "the course to be done")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # daemon, webserver, code server
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert f"Dagster UI:   http://127.0.0.1:{port}" in out
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _stack_processes(root: int) -> list[psutil.Process]:
    return psutil.Process(root).children(recursive=True)


def _roles(procs: list[psutil.Process]) -> dict[str, int]:
    """How many of each stack process: daemon, webserver, code server (``dagster api grpc``)."""
    roles = {"daemon": 0, "webserver": 0, "code server": 0}
    for p in procs:
        try:
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "dagster-daemon" in cmd:
            roles["daemon"] += 1
        elif "dagster-webserver" in cmd:
            roles["webserver"] += 1
        elif "api grpc" in cmd:
            roles["code server"] += 1
    return roles


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_ignite_dev_stops_its_whole_stack_on_sigterm_and_sighup(db_url, tmp_path, sig):
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=db_url, IGNITE_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "ignite_dagster.cli.main", "dev", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        # the daemon, the webserver and the code server each of them starts (the daemon's and the UI's)
        wait_until(lambda: proc.poll() is not None or _roles(_stack_processes(proc.pid)) == {
            "daemon": 1, "webserver": 1, "code server": 2}, 180, "daemon, webserver and both code servers",
            poll=0.5)
        assert proc.poll() is None, proc.stdout.read()
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/server_info"), 120, "the Dagster UI to answer")
        children = _stack_processes(proc.pid)
        groups = {os.getpgid(p.pid) for p in children} - {os.getpgid(proc.pid)}
        assert len(groups) == 2, groups  # daemon's and webserver's sessions (code servers live in them)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert f"{sig.name}: stopping" in out, out
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
        assert not [g for g in groups if _group_alive(g)], groups
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
