"""The run process's garbage-collector policy: what a run's process loaded before its first run is frozen
out of the cyclic collector, once per process.

Why: a run's process holds ~270,000 long-lived objects before its first op runs (Dagster, the SDKs,
the definitions). A full (generation 2) collection during the run walks all of them: measured in a
10-course model-path run, one such pause took 170–190 ms, stopping the model loop, every course
thread and the reporting step at once; with those objects frozen (``gc.freeze``) the same collection
took 32 ms. Frozen objects are still freed by reference counting; only cycles among them would stay,
and what a process imports and defines lives as long as the process anyway.

Once per process, at the first run's start: a process that runs many runs (a Celery worker, a test
session, a benchmark) would otherwise freeze the cyclic garbage of its earlier runs too, which would
never be collected.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def freeze_long_lived_once() -> bool:
    """Freeze everything allocated so far, the first time this process calls it; True when it did."""
    global _frozen
    with _lock:
        if _frozen:
            return False
        gc.freeze()
        _frozen = True
        return True
