"""The run process's GC policy (``defs/run_process.py``): what was loaded before the first run is frozen
out of the cyclic collector, once per process (a process running many runs must not freeze their garbage)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from ignite_dagster.defs.run_process import freeze_long_lived_once
before = gc.get_freeze_count()
first = freeze_long_lived_once()
frozen = gc.get_freeze_count()
leftover = [object() for _ in range(1000)]  # allocated after the first run started
second = freeze_long_lived_once()
print(before, first, frozen > 1_000, second, gc.get_freeze_count() == frozen)
"""


def test_the_first_run_freezes_what_the_process_loaded_and_later_runs_freeze_nothing():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "True", "True", "False", "True"]
