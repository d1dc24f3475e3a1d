#!/usr/bin/env python3
"""Bootstrap for a fresh clone: needs only Python 3.11+.

    python3 dev.py demo     # the main job end to end (embedded Postgres, Dagster daemon, several courses)
    python3 dev.py test     # the test suite (extra arguments go to pytest)
    python3 dev.py ignite … # any `ignite` command inside the project's virtualenv

The first call creates `.venv/` and installs the locked dependencies (requirements.lock) plus this
package in editable mode; later calls reinstall only when the lock file or pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".ignite-installed"


def _fingerprint() -> str:
    h = hashlib.sha256()
    for name in ("requirements.lock", "pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under any python3 before the venv exists
        sys.exit(f"ignite-dagster needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    print("installing locked dependencies (first run takes a few minutes) ...", flush=True)
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    # uv installs the ~450 locked packages in seconds instead of minutes; plain pip works too.
    if subprocess.call([*pip, "install", "uv"]) == 0:
        subprocess.check_call([str(BIN / "uv"), "pip", "install", "--python", str(PY), "-r", "requirements.lock"], cwd=ROOT)
        subprocess.check_call([str(BIN / "uv"), "pip", "install", "--python", str(PY), "--no-deps", "-e", "."], cwd=ROOT)
    else:
        subprocess.check_call([*pip, "install", "-r", "requirements.lock"], cwd=ROOT)
        subprocess.check_call([*pip, "install", "--no-deps", "-e", "."], cwd=ROOT)
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    ensure_venv()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if command == "test":
        args = [str(PY), "-m", "pytest", *rest]
    elif command == "demo":
        args = [str(BIN / "ignite"), "demo", *rest]
    elif command == "ignite":
        args = [str(BIN / "ignite"), *rest]
    elif command == "setup":
        return 0
    else:
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    child = subprocess.Popen(args, cwd=ROOT, env=env)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue  # Ctrl-C reached the child too (same process group); wait for its clean shutdown


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
