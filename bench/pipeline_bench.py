"""Pipeline latency and burst throughput through the real Dagster daemon.

Latency: one deterministic course, enqueue → done, p50 over --latency-runs runs (target ≤ 15 s).
Burst: --burst deterministic courses enqueued at once; time until all are done and machine CPU-seconds
per course, measured side by side for the batched design (IGNITE_COURSES_PER_RUN=--per-run) and the
one-course-per-run baseline (on --baseline-burst courses), printing their throughput ratio.

    .venv/bin/python bench/pipeline_bench.py [--burst 100] [--baseline-burst 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ignite_dagster.queue import JobQueue, NewCourseJob  # noqa: E402
from tests.support.pg import TestPostgres  # noqa: E402
from tests.support.stack import start_stack, wait_until  # noqa: E402

SUBJECTS = [("addition", "options"), ("subtraction", "numeric"), ("multiplication", "options"), ("division", "numeric")]


def cpu_busy_seconds() -> float:
    """Machine-wide busy CPU time (all processes: daemon, runs, Postgres): /proc/stat user+nice+system."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system = (int(x) for x in fields[:3])
    return (user + nice + system) / 100.0


def new_org(url: str):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("INSERT INTO organizations (name) VALUES ('bench') RETURNING id").fetchone()[0]


def enqueue(queue: JobQueue, org, n: int, tag: str) -> list:
    ids = []
    for i in range(n):
        subject, mode = SUBJECTS[i % len(SUBJECTS)]
        job = NewCourseJob(course_id=f"{tag}-{i}", subject=subject, grade_band="3-5", items_per_group=6, mode=mode)
        ids.append(queue.enqueue_course(job, organization_id=org).job.id)
    return ids


def all_done(queue: JobQueue, ids) -> bool:
    with queue.connection() as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM ai_course_jobs WHERE id = ANY(%s) GROUP BY status",
                            (list(ids),)).fetchall()
    counts = {r["status"]: r["n"] for r in rows}
    bad = {k: v for k, v in counts.items() if k in ("failed", "dead_letter")}
    if bad:
        raise SystemExit(f"jobs failed: {bad}")
    return counts.get("done", 0) == len(ids)


def burst(pg: TestPostgres, n: int, per_run: int, runs: int) -> tuple[float, float]:
    url = pg.fresh()
    with tempfile.TemporaryDirectory() as home:
        stack = start_stack(url, Path(home), {"IGNITE_COURSES_PER_RUN": str(per_run),
                                             "IGNITE_MAX_CONCURRENT_RUNS": str(runs),
                                             "IGNITE_SENSOR_INTERVAL_SECONDS": "1"})
        try:
            queue, org = JobQueue(url), new_org(url)
            warm = enqueue(queue, org, 1, "warm")  # daemon + code server up before timing starts
            wait_until(lambda: all_done(queue, warm), 180, "warm-up course", stack=stack)
            cpu0, t0 = cpu_busy_seconds(), time.monotonic()
            ids = enqueue(queue, org, n, f"burst{per_run}")
            wait_until(lambda: all_done(queue, ids), 900, f"{n} courses", poll=0.5, stack=stack)
            return time.monotonic() - t0, (cpu_busy_seconds() - cpu0) / n
        finally:
            stack.stop()


def latency(pg: TestPostgres, runs: int) -> list[float]:
    url = pg.fresh()
    with tempfile.TemporaryDirectory() as home:
        stack = start_stack(url, Path(home), {"IGNITE_SENSOR_INTERVAL_SECONDS": "5"})  # production default
        try:
            queue, org = JobQueue(url), new_org(url)
            warm = enqueue(queue, org, 1, "warm")
            wait_until(lambda: all_done(queue, warm), 180, "warm-up course", stack=stack)
            out = []
            for i in range(runs):
                t0 = time.monotonic()
                ids = enqueue(queue, org, 1, f"lat{i}")
                wait_until(lambda ids=ids: all_done(queue, ids), 120, "one course", poll=0.1, stack=stack)
                out.append(time.monotonic() - t0)
            return out
        finally:
            stack.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-runs", type=int, default=5)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--baseline-burst", type=int, default=20)
    ap.add_argument("--per-run", type=int, default=10)
    ap.add_argument("--runs", type=int, default=4, help="IGNITE_MAX_CONCURRENT_RUNS for the burst")
    args = ap.parse_args()
    pg = TestPostgres()
    try:
        lat = latency(pg, args.latency_runs)
        print(f"latency enqueue→done (sensor every 5 s): p50 {statistics.median(lat):.1f} s "
              f"[{', '.join(f'{x:.1f}' for x in lat)}] target ≤ 15 s")
        b_wall, b_cpu = burst(pg, args.burst, args.per_run, args.runs)
        print(f"burst {args.burst} courses, {args.per_run} per run, {args.runs} concurrent runs: all done in "
              f"{b_wall:.1f} s ({args.burst / b_wall:.2f} courses/s), {b_cpu:.2f} CPU-s per course; target ≤ 120 s")
        s_wall, s_cpu = burst(pg, args.baseline_burst, 1, args.runs)
        print(f"baseline {args.baseline_burst} courses, 1 per run: {s_wall:.1f} s "
              f"({args.baseline_burst / s_wall:.2f} courses/s), {s_cpu:.2f} CPU-s per course")
        print(f"ratio batched/baseline: throughput {(args.burst / b_wall) / (args.baseline_burst / s_wall):.1f}x, "
              f"CPU per course {s_cpu / b_cpu:.1f}x less")
    finally:
        pg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
