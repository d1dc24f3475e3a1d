"""The queue sensors tick as often as IGNITE_SENSOR_INTERVAL_SECONDS says, given how Dagster's daemon loops.

The daemon starts a sensor loop every 5 s and skips a sensor whose last tick started less than its
``minimum_interval_seconds`` ago (``is_under_min_interval``). A tick starts a little after its loop (the
evaluation is submitted to a thread pool, the code server is busy), so a minimum interval equal to the
period skips loops. These tests replay that loop."""

import random

import pytest

from ignite_dagster.defs.queue_sensors import DAEMON_LOOP_SECONDS, minimum_interval


def _tick_gaps(min_interval: int, loops: int = 400, max_delay: float = 2.0, seed: int = 7) -> list[float]:
    """Seconds between a sensor's ticks when the daemon's loops start every 5 s, the sensor declares
    ``min_interval`` and each tick starts up to ``max_delay`` after its loop."""
    rng = random.Random(seed)
    last, gaps = None, []
    for n in range(loops):
        now = n * DAEMON_LOOP_SECONDS
        if last is None or now - last >= min_interval:  # the daemon's check, at the loop's start
            start = now + rng.uniform(0, max_delay)
            if last is not None:
                gaps.append(start - last)
            last = start
    return gaps


def test_every_5_s_ticks_on_every_loop_even_when_ticks_start_late():
    gaps = _tick_gaps(minimum_interval(5))
    assert max(gaps) < 2 * DAEMON_LOOP_SECONDS, "a loop was skipped: the sensor ticked 10 s apart"


def test_the_old_mapping_skips_loops():
    """What minimum_interval fixes: minimum_interval_seconds = 5 skipped every loop whose tick had started late."""
    assert max(_tick_gaps(5)) >= 2 * DAEMON_LOOP_SECONDS


@pytest.mark.parametrize(("every", "period"), [(1, 5), (5, 5), (7, 10), (10, 10), (30, 30)])
def test_an_interval_is_rounded_up_to_whole_loops(every, period):
    gaps = _tick_gaps(minimum_interval(every))
    assert all(period - 2.0 <= g <= period + 2.0 for g in gaps), (every, sorted(set(round(g) for g in gaps)))
