"""No double claim: several OS processes claim from one table; a recording table with a UNIQUE
constraint proves each job was claimed exactly once (counts alone could hide a duplicate + a loss)."""

from __future__ import annotations

import multiprocessing as mp

import psycopg
import pytest

from ignite_dagster.queue import JobQueue
from tests.support.jobs import enqueue_many

N_JOBS = 2000
N_PROCS = 4


def _worker(url: str, worker: str, batch: int, start: mp.Event, out: mp.Queue) -> None:
    queue = JobQueue(url)
    claimed = 0
    start.wait(30)
    with psycopg.connect(url, autocommit=True) as rec:
        while True:
            jobs = queue.claim_course_jobs(worker, limit=batch)
            if not jobs:
                break
            for job in jobs:
                # a duplicate claim would violate the primary key and crash this worker
                rec.execute("INSERT INTO claims_seen (job_id, worker) VALUES (%s, %s)", (job.id, worker))
                assert queue.complete(job.id, "ai_course_jobs", job.attempt, {})
                claimed += 1
    out.put((worker, claimed))


@pytest.mark.parametrize("batch", [1, 25])
def test_no_double_claim_across_processes(db_url, org_id, batch):
    enqueue_many(db_url, org_id, N_JOBS)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE claims_seen (job_id uuid PRIMARY KEY, worker text NOT NULL)")
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(db_url, f"w{i}", batch, start, out)) for i in range(N_PROCS)]
    for p in procs:
        p.start()
    start.set()
    results = dict(out.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sum(results.values()) == N_JOBS
    assert all(n > 0 for n in results.values()), results  # all processes really competed
    with psycopg.connect(db_url) as conn:
        seen = conn.execute("SELECT count(*) FROM claims_seen").fetchone()[0]
        left = conn.execute("SELECT count(*) FROM ai_course_jobs WHERE status <> 'done'").fetchone()[0]
        attempts = conn.execute("SELECT max(attempt) FROM ai_course_jobs").fetchone()[0]
    assert (seen, left, attempts) == (N_JOBS, 0, 1)
