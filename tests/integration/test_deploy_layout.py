"""The documented production layout (deploy/) is runnable as written: the code server unit's own command
line serves the code location, and the daemon's pools step sets the limits of a fresh instance (real
Postgres); the layout read as files is tests/unit/test_deploy_layout.py."""

from __future__ import annotations

import shlex
import socket
import subprocess
import time

import pytest
import yaml

from ignite_dagster.config import REPO_ROOT
from tests.support.deploy import local_argv, systemd_units


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(240)
def test_the_code_server_unit_serves_the_code_location(db_url, tmp_path):
    argv = local_argv(shlex.split(systemd_units()["ignite-code-server"]["Service"]["ExecStart"]))
    port = _free_port()
    argv[argv.index("-p") + 1] = str(port)
    env = {"PATH": str(REPO_ROOT / ".venv/bin") + ":/usr/bin:/bin", "DATABASE_URL": db_url, "IGNITE_ENV": "test",
           "IGNITE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    server = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    health = [str(REPO_ROOT / ".venv/bin/dagster"), "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1"]
    try:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read().decode(errors="replace")[-3000:]
            if subprocess.run(health, env=env, capture_output=True).returncode == 0:
                break
            time.sleep(2)
        else:
            pytest.fail("the code server never answered its health check")
        from dagster._grpc.client import DagsterGrpcClient
        from dagster._serdes import deserialize_value

        listed = deserialize_value(DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories())
        pointers = {name: p.describe() for name, p in listed.repository_code_pointer_dict.items()}
        assert pointers and all("ignite_dagster.definitions" in d for d in pointers.values()), pointers
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


@pytest.mark.timeout(120)
def test_the_pools_step_sets_the_limits_of_a_fresh_instance(db_url, tmp_path):
    (tmp_path / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    argv = local_argv(shlex.split(systemd_units()["ignite-daemon"]["Service"]["ExecStartPre"]))
    env = {"PATH": str(REPO_ROOT / ".venv/bin") + ":/usr/bin:/bin", "DATABASE_URL": db_url, "IGNITE_ENV": "test",
           "IGNITE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    limit = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["concurrency"]["pools"]["default_limit"]
    for _ in range(2):  # idempotent: a restart of the daemon runs it again
        done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=100)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip() == f"pool model_provider: limit {limit}", done.stdout
