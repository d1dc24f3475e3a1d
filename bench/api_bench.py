"""Enqueue latency of the HTTP API at a fixed arrival rate (open loop), against a real service.

What it does:
1. creates a fresh, migrated database (the machine's Postgres when reachable, else embedded pgserver),
   an organization and an editor;
2. starts ``python -m ignite_dagster.api.server`` (exactly what ``ignite api`` runs) in a subprocess on
   a free loopback port, local storage in a temp folder, and waits for ``/health``;
3. sends ``POST /functions/v1/enqueue-job`` at a fixed rate for ``--duration`` seconds. The schedule is
   open loop: request *i* is due at ``t0 + i/rate`` whatever happened to earlier ones, and its latency
   is measured from that due time, so time spent queueing behind a slow request counts (a closed loop
   would hide it — "coordinated omission");
4. prints p50/p90/p99/max latency and errors, and checks the database holds one job per success.

Every request is a realistic one: JWT user auth (role lookup), a unique Idempotency-Key, and notes,
so each enqueue also writes ``special_requests.json`` to storage before inserting the row.

    .venv/bin/python bench/api_bench.py               # 100 req/s for 30 s
    .venv/bin/python bench/api_bench.py --duration 5  # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import jwt
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.pg import TestPostgres  # noqa: E402  (fresh databases, same helper as the tests)

SECRET = "bench-hs256-secret-" + uuid.uuid4().hex
AUDIENCE = "authenticated"
TARGET_P99_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: the figure is a latency some request really had)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def seed(db_url: str) -> tuple[uuid.UUID, uuid.UUID]:
    user = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        org = conn.execute("INSERT INTO organizations (name) VALUES ('Bench org') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO user_roles (user_id, organization_id, role) VALUES (%s, %s, 'editor')", (user, org))
    return org, user


def start_service(db_url: str, storage: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "IGNITE_ENV": "dev",
        "DATABASE_URL": db_url,
        "IGNITE_STORAGE_ROOT": str(storage),
        "IGNITE_API_HOST": "127.0.0.1",
        "IGNITE_API_PORT": str(port),
        "JWT_SECRET": SECRET,
        "JWT_AUDIENCE": AUDIENCE,
        "IGNITE_ENQUEUE_RATE_PER_MINUTE": "1000000",  # the bench is one caller; it measures, not limits
    }
    env.pop("AGENT_TOKEN", None)
    env.pop("JWT_JWKS_URL", None)
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "ignite_dagster.api.server"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process (Linux /proc): the service's CPU cost per request."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, IndexError, ValueError):
        return None


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the service did not become healthy in time")


def body(i: int) -> dict:
    return {
        "jobType": "ai_course_generate",
        "payload": {
            "course_id": f"bench-{i % 500}",
            "subject": "addition",
            "grade_band": "3-5",
            "items_per_group": 8,
            "mode": "options",
            "notes": f"Bench request {i}: use everyday objects, keep numbers under 1000.",
        },
    }


async def warm_up(base: str, token: str, count: int) -> None:
    """Connections, caches, the pool, lazy imports: exercised before anything is measured."""
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        for i in range(count):
            r = await client.post("/functions/v1/enqueue-job", json=body(-1 - i),
                                  headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"warm-{i}"})
            r.raise_for_status()


async def run_load(base: str, token: str, rate: float, duration: float) -> tuple[list[float], list[str], float]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        total = int(rate * duration)
        latencies: list[float] = []
        errors: list[str] = []
        run_id = uuid.uuid4().hex[:8]
        t0 = time.perf_counter() + 0.05

        async def one(i: int) -> None:
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                r = await client.post(
                    "/functions/v1/enqueue-job", json=body(i), headers={**headers, "Idempotency-Key": f"{run_id}-{i}"}
                )
                if r.status_code != 202:
                    errors.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append((time.perf_counter() - due) * 1000)

        await asyncio.gather(*(one(i) for i in range(total)))
        return latencies, errors, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    ap.add_argument("--warmup", type=int, default=50, help="unmeasured requests first (default 50)")
    args = ap.parse_args()

    pg = TestPostgres()
    tmp = Path(tempfile.mkdtemp(prefix="ignite-bench-"))
    proc = None
    try:
        db_url = pg.fresh()
        org, user = seed(db_url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_service(db_url, tmp / "storage", port, tmp / "service.log")
        wait_healthy(base, proc)
        token = jwt.encode({"sub": str(user), "aud": AUDIENCE, "exp": int(time.time()) + 3600}, SECRET, "HS256")

        asyncio.run(warm_up(base, token, args.warmup))
        load_before = os.getloadavg()[0]
        cpu_start = cpu_seconds(proc.pid)
        latencies, errors, elapsed = asyncio.run(run_load(base, token, args.rate, args.duration))
        cpu_end = cpu_seconds(proc.pid)

        with psycopg.connect(db_url) as conn:
            jobs = conn.execute("SELECT count(*) FROM ai_course_jobs").fetchone()[0] - args.warmup
        files = sum(1 for _ in (tmp / "storage" / "courses" / "debug" / "jobs").glob("*/special_requests.json"))
        files -= args.warmup

        ok = len(latencies) - len(errors)
        p50, p90, p99 = (percentile(latencies, q) for q in (50, 90, 99))
        print(f"api_bench: POST /functions/v1/enqueue-job, open loop {args.rate:g} req/s for {args.duration:g} s "
              f"(postgres: {pg.kind}, auth: JWT HS256, notes saved per request)")
        print(f"  requests {len(latencies)}  ok {ok}  errors {len(errors)}  achieved {len(latencies) / elapsed:.1f} req/s")
        print(f"  latency ms  p50 {p50:.2f}  p90 {p90:.2f}  p99 {p99:.2f}  max {max(latencies):.2f}  "
              f"mean {statistics.fmean(latencies):.2f}")
        if cpu_start is not None and cpu_end is not None:
            user, system = ((end - start) / len(latencies) * 1000 for start, end in zip(cpu_start, cpu_end, strict=True))
            print(f"  service CPU per request: user {user:.2f} ms, system {system:.2f} ms; "
                  f"host load average before the run {load_before:.2f} on {os.cpu_count()} CPUs")
        print(f"  database: {jobs} new jobs, storage: {files} special_requests.json (expected {ok} each)")
        for e in errors[:5]:
            print(f"  error: {e}")
        verdict = p99 <= TARGET_P99_MS and not errors and jobs == ok and files == ok
        print(f"  target p99 <= {TARGET_P99_MS:g} ms and zero errors: {'PASS' if verdict else 'FAIL'}")
        return 0 if verdict else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg.close()


if __name__ == "__main__":
    raise SystemExit(main())
