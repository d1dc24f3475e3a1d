"""The documented production layout (deploy/) as written: every supervised command exists, exactly one
daemon, the workspace names the code server the units start (that the code server serves the code
location, started with the unit's own command line, is tests/integration/test_deploy_layout.py)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import yaml

from tests.support.deploy import DEPLOY, INSTALL_ROOT, local_argv, systemd_units


def _supervisord() -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(DEPLOY / "supervisord.conf")
    return {s.removeprefix("program:"): dict(parser[s]) for s in parser.sections() if s.startswith("program:")}


def _program_argv(command: str) -> list[str]:
    """A supervisord command; ``/bin/sh -c "<pre> && exec <argv>"`` (a start-up step first) gives <argv>."""
    argv = shlex.split(command)
    if argv[:2] == ["/bin/sh", "-c"]:
        return shlex.split(argv[2].rsplit("&& exec ", 1)[1])
    return argv


def test_units_and_supervisord_run_the_same_four_processes_with_one_daemon():
    units, programs = systemd_units(), _supervisord()
    assert set(units) == set(programs) == {"ignite-code-server", "ignite-daemon", "ignite-webserver", "ignite-api"}
    for name, unit in units.items():
        service = unit["Service"]
        assert service["Restart"] == "always" and programs[name]["autorestart"] == "true", name
        unit_argv = local_argv(shlex.split(service["ExecStart"]))
        program_argv = local_argv(_program_argv(programs[name]["command"]))
        assert unit_argv[0] == program_argv[0] and Path(unit_argv[0]).exists(), unit_argv[0]  # installed by the venv
        assert unit_argv[1:3] == program_argv[1:3], name
    daemons = [n for n, u in units.items() if "dagster-daemon" in u["Service"]["ExecStart"]]
    assert daemons == ["ignite-daemon"]
    # the code server's children are the runs: stopping or restarting it must not kill them
    assert units["ignite-code-server"]["Service"]["KillMode"] == "process"


def test_workspace_points_daemon_and_webserver_at_the_supervised_code_server():
    server = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    argv = shlex.split(systemd_units()["ignite-code-server"]["Service"]["ExecStart"])
    assert argv[argv.index("-p") + 1] == str(server["port"]) and argv[argv.index("-h") + 1] == server["host"]
    assert argv[argv.index("--location-name") + 1] == server["location_name"]
    for name in ("ignite-daemon", "ignite-webserver"):
        assert f"{INSTALL_ROOT}/deploy/workspace.yaml" in systemd_units()[name]["Service"]["ExecStart"]


def test_the_daemon_sets_the_pools_before_it_starts_in_both_layouts():
    unit = systemd_units()["ignite-daemon"]["Service"]
    pre = "/opt/ignite/.venv/bin/python -m ignite_dagster.defs.pools"
    assert unit["ExecStartPre"] == pre
    assert _supervisord()["ignite-daemon"]["command"].startswith(f'/bin/sh -c "{pre} && exec ')


def test_a_celery_worker_host_runs_the_layout_the_e2e_test_runs():
    """deploy/celery's worker unit: the dagster-celery command of this venv, the worker config, the queue of
    the launcher block, the same settings file as every other host."""
    import configparser

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(DEPLOY / "celery" / "ignite-celery-worker.service")
    service = unit["Service"]
    argv = local_argv(shlex.split(service["ExecStart"]))
    assert Path(argv[0]).name == "dagster-celery" and Path(argv[0]).exists(), argv[0]
    assert argv[argv.index("-A") + 1] == "dagster_celery.app"
    assert Path(argv[argv.index("-y") + 1]) == DEPLOY / "celery" / "worker.yaml"
    launcher = yaml.safe_load((DEPLOY / "celery" / "run_launcher.yaml").read_text())["run_launcher"]["config"]
    assert argv[argv.index("-q") + 1] == f"${{{launcher['default_queue']['env']}}}"
    assert service["EnvironmentFile"] == systemd_units()["ignite-daemon"]["Service"]["EnvironmentFile"]
    assert service["Restart"] == "always"
