"""The production layout under deploy/ as the tests read it: the systemd units, and their command lines
mapped from the install root they expect onto this checkout."""

from __future__ import annotations

import configparser

from ignite_dagster.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
INSTALL_ROOT = "/opt/ignite"  # where the units expect the project; mapped to this checkout here


def systemd_units() -> dict[str, configparser.ConfigParser]:
    units = {}
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str
        parser.read(path)
        units[path.stem] = parser
    return units


def local_argv(argv: list[str]) -> list[str]:
    return [a.replace(INSTALL_ROOT, str(REPO_ROOT)) for a in argv]
