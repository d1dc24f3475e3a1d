"""The documented production layout (deploy/) is runnable as written: every supervised command exists,
exactly one daemon, the workspace names the code server the units start, and that code server serves
the code location (started here with the unit's own command line)."""

from __future__ import annotations

import configparser
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ignite_dagster.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
INSTALL_ROOT = "/opt/ignite"  # where the units expect the project; mapped to this checkout here


def _units() -> dict[str, configparser.ConfigParser]:
    units = {}
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str
        parser.read(path)
        units[path.stem] = parser
    return units


def _supervisord() -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(DEPLOY / "supervisord.conf")
    return {s.removeprefix("program:"): dict(parser[s]) for s in parser.sections() if s.startswith("program:")}


def _local(argv: list[str]) -> list[str]:
    return [a.replace(INSTALL_ROOT, str(REPO_ROOT)) for a in argv]


def _program_argv(command: str) -> list[str]:
    """A supervisord command; ``/bin/sh -c "<pre> && exec <argv>"`` (a start-up step first) gives <argv>."""
    argv = shlex.split(command)
    if argv[:2] == ["/bin/sh", "-c"]:
        return shlex.split(argv[2].rsplit("&& exec ", 1)[1])
    return argv


def test_units_and_supervisord_run_the_same_four_processes_with_one_daemon():
    units, programs = _units(), _supervisord()
    assert set(units) == set(programs) == {"ignite-code-server", "ignite-daemon", "ignite-webserver", "ignite-api"}
    for name, unit in units.items():
        service = unit["Service"]
        assert service["Restart"] == "always" and programs[name]["autorestart"] == "true", name
        unit_argv = _local(shlex.split(service["ExecStart"]))
        program_argv = _local(_program_argv(programs[name]["command"]))
        assert unit_argv[0] == program_argv[0] and Path(unit_argv[0]).exists(), unit_argv[0]  # installed by the venv
        assert unit_argv[1:3] == program_argv[1:3], name
    daemons = [n for n, u in units.items() if "dagster-daemon" in u["Service"]["ExecStart"]]
    assert daemons == ["ignite-daemon"]
    # the code server's children are the runs: stopping or restarting it must not kill them
    assert units["ignite-code-server"]["Service"]["KillMode"] == "process"


def test_workspace_points_daemon_and_webserver_at_the_supervised_code_server():
    server = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    argv = shlex.split(_units()["ignite-code-server"]["Service"]["ExecStart"])
    assert argv[argv.index("-p") + 1] == str(server["port"]) and argv[argv.index("-h") + 1] == server["host"]
    assert argv[argv.index("--location-name") + 1] == server["location_name"]
    for name in ("ignite-daemon", "ignite-webserver"):
        assert f"{INSTALL_ROOT}/deploy/workspace.yaml" in _units()[name]["Service"]["ExecStart"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(240)
def test_the_code_server_unit_serves_the_code_location(db_url, tmp_path):
    argv = _local(shlex.split(_units()["ignite-code-server"]["Service"]["ExecStart"]))
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


def test_the_daemon_sets_the_pools_before_it_starts_in_both_layouts():
    unit = _units()["ignite-daemon"]["Service"]
    pre = "/opt/ignite/.venv/bin/python -m ignite_dagster.defs.pools"
    assert unit["ExecStartPre"] == pre
    assert _supervisord()["ignite-daemon"]["command"].startswith(f'/bin/sh -c "{pre} && exec ')


@pytest.mark.timeout(120)
def test_the_pools_step_sets_the_limits_of_a_fresh_instance(db_url, tmp_path):
    (tmp_path / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    argv = _local(shlex.split(_units()["ignite-daemon"]["Service"]["ExecStartPre"]))
    env = {"PATH": str(REPO_ROOT / ".venv/bin") + ":/usr/bin:/bin", "DATABASE_URL": db_url, "IGNITE_ENV": "test",
           "IGNITE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    limit = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["concurrency"]["pools"]["default_limit"]
    for _ in range(2):  # idempotent: a restart of the daemon runs it again
        done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=100)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip() == f"pool model_provider: limit {limit}", done.stdout


def test_a_celery_worker_host_runs_the_layout_the_e2e_test_runs():
    """deploy/celery's worker unit: the dagster-celery command of this venv, the worker config, the queue of
    the launcher block, the same settings file as every other host."""
    import configparser

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(DEPLOY / "celery" / "ignite-celery-worker.service")
    service = unit["Service"]
    argv = _local(shlex.split(service["ExecStart"]))
    assert Path(argv[0]).name == "dagster-celery" and Path(argv[0]).exists(), argv[0]
    assert argv[argv.index("-A") + 1] == "dagster_celery.app"
    assert Path(argv[argv.index("-y") + 1]) == DEPLOY / "celery" / "worker.yaml"
    launcher = yaml.safe_load((DEPLOY / "celery" / "run_launcher.yaml").read_text())["run_launcher"]["config"]
    assert argv[argv.index("-q") + 1] == f"${{{launcher['default_queue']['env']}}}"
    assert service["EnvironmentFile"] == _units()["ignite-daemon"]["Service"]["EnvironmentFile"]
    assert service["Restart"] == "always"
