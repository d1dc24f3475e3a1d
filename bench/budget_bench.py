"""Provider budgets and fair share through the real daemon, against a provider that enforces its limits.

A loopback OpenAI-compatible server (tests/support/openai_server.py, the scripted course model) enforces
RPM and TPM over a sliding minute, counting each accepted request's reported tokens at its arrival, and
answers 429 with Retry-After past them; every answer takes --latency. Two organizations enqueue
model-path courses (4 groups x 12 items, distinct subjects so the answer cache never serves one): A
--a-courses first, then B --b-courses. The real Dagster daemon works them with --runs concurrent runs,
the factory configured with the provider's limits (IGNITE_LLM_RPM / IGNITE_LLM_TPM) and a per-org cap
(IGNITE_ORG_MAX_COURSES_IN_FLIGHT).

Printed: wall time against the budget-limited optimum (whichever of accepted calls / RPM and reported
tokens / TPM binds), 429s as a share of calls, when B's last course finished against A's 30th, dead
letters. Targets (issue 13): wall <= 1.15x the optimum, 429s < 1 %, 0 dead letters, B's last course
done before A's 30th.

    .venv/bin/python bench/budget_bench.py [--a-courses 90] [--b-courses 10] [--rpm 600] [--tpm 150000]
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ignite_dagster.course.request import CourseRequest  # noqa: E402
from ignite_dagster.course_jobs.submit import submit_course_request  # noqa: E402
from ignite_dagster.queue import JobQueue, NewCourseJob  # noqa: E402
from ignite_dagster.storage.local import LocalObjectStore  # noqa: E402
from tests.support.openai_server import (  # noqa: E402
    CHAT,
    OpenAICompatServer,
    RecordedRequest,
    Reply,
    ScriptedCourseModel,
    rate_limited,
)
from tests.support.pg import TestPostgres  # noqa: E402
from tests.support.stack import start_stack, wait_until  # noqa: E402

WINDOW = 60.0
TOPICS = ["volcanoes", "rivers", "magnets", "plants", "weather", "the solar system", "poetry", "fossils",
          "bridges", "deserts"]


class LimitedProvider:
    """The scripted course model behind a provider's rate limits (sliding minute, by arrival time)."""

    def __init__(self, rpm: int, tpm: int) -> None:
        self.model = ScriptedCourseModel()
        self.rpm, self.tpm = rpm, tpm
        self.accepted: collections.deque[tuple[float, int]] = collections.deque()
        self.lock = threading.Lock()
        self.calls = self.limited = self.tokens = 0
        self.log: list[tuple[float, int]] = []  # every accepted request (arrival, tokens)

    def __call__(self, request: RecordedRequest) -> Reply:
        reply = self.model(request)
        usage = (reply.body or {}).get("usage") or {} if reply.status == 200 else {}
        tokens = int(usage.get("total_tokens") or 0)
        now = request.received_at
        with self.lock:
            self.calls += 1
            while self.accepted and self.accepted[0][0] <= now - WINDOW:
                self.accepted.popleft()
            used = sum(t for _, t in self.accepted)
            if len(self.accepted) >= self.rpm or (self.accepted and used + tokens > self.tpm):
                self.limited += 1
                wait = self._wait(now, tokens, used)
                return rate_limited(retry_after=math.ceil(wait), retry_after_ms=int(wait * 1000) + 1)
            self.accepted.append((now, tokens))
            self.log.append((now, tokens))
            self.tokens += tokens
            return reply

    def _wait(self, now: float, tokens: int, used: int) -> float:
        """Seconds until this request would fit: enough of the oldest requests leave the window."""
        need_requests = len(self.accepted) - self.rpm + 1
        need_tokens = used + tokens - self.tpm
        freed = 0
        for n, (at, t) in enumerate(self.accepted, start=1):
            freed += t
            if n >= need_requests and freed >= need_tokens:
                return max(0.0, at + WINDOW - now)
        return WINDOW


def cpu_busy_seconds() -> float:
    """Machine-wide busy CPU time (every process: daemon, runs, Postgres, other users): /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system = (int(x) for x in fields[:3])
    return (user + nice + system) / 100.0


def new_org(url: str, name: str):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("INSERT INTO organizations (name) VALUES (%s) RETURNING id", (name,)).fetchone()[0]


def statuses(url: str, ids: list) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM ai_course_jobs WHERE id = ANY(%s) GROUP BY status",
                            (ids,)).fetchall()
    return dict(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a-courses", type=int, default=90)
    ap.add_argument("--b-courses", type=int, default=10)
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--tpm", type=int, default=150_000)
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--per-run", type=int, default=10)
    ap.add_argument("--org-cap", type=int, default=25)
    args = ap.parse_args()

    pg = TestPostgres()
    provider = LimitedProvider(args.rpm, args.tpm)
    try:
        with OpenAICompatServer(latency=args.latency) as server, tempfile.TemporaryDirectory() as home:
            server.respond_with(CHAT, provider)
            url = pg.fresh()
            env = {"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": server.base_url, "IGNITE_TEXT_MODEL": "test-model",
                   "IGNITE_LLM_PRICES": '{"test-model": {"input": 0.15, "output": 0.6}}',
                   "IGNITE_LLM_RPM": str(args.rpm), "IGNITE_LLM_TPM": str(args.tpm),
                   "IGNITE_ORG_MAX_COURSES_IN_FLIGHT": str(args.org_cap),
                   "IGNITE_MAX_CONCURRENT_RUNS": str(args.runs), "IGNITE_COURSES_PER_RUN": str(args.per_run),
                   "IGNITE_SENSOR_INTERVAL_SECONDS": "1"}
            stack = start_stack(url, Path(home), env)
            try:
                queue, store = JobQueue(url), LocalObjectStore(Path(home) / "storage")
                a, b = new_org(url, "A"), new_org(url, "B")
                # daemon, code server and first run up before timing (a pack course: no model calls)
                warm = [queue.enqueue_course(NewCourseJob(course_id="warm", subject="addition", grade_band="3-5"),
                                             organization_id=a).job.id]
                wait_until(lambda: statuses(url, warm).get("done") == 1, 300, "warm-up course", stack=stack)

                def submit(org, tag: str, n: int) -> list:
                    out = []
                    for i in range(n):
                        request = CourseRequest(course_id=f"{tag}-{i}", subject=f"{TOPICS[i % len(TOPICS)]} {tag} {i}",
                                                grade_band="3-5", items_per_group=12, groups_count=4)
                        out.append(submit_course_request(queue, store, request, organization_id=org).job.id)
                    return out

                samples: list[tuple[float, int, int, int]] = []  # (t, in flight, done, active runs)
                stop = threading.Event()

                def sample() -> None:
                    while not stop.wait(5.0):
                        with psycopg.connect(url) as conn:
                            row = conn.execute(
                                "SELECT count(*) FILTER (WHERE status = 'processing'), "
                                "count(*) FILTER (WHERE status = 'done') FROM ai_course_jobs WHERE course_id <> 'warm'"
                            ).fetchone()
                            runs = conn.execute("SELECT count(*) FROM runs WHERE status IN ('STARTED', 'STARTING', "
                                                "'QUEUED', 'NOT_STARTED')").fetchone()[0]
                        samples.append((time.monotonic() - t0, row[0], row[1], runs))

                load0, cpu0 = os.getloadavg()[0], cpu_busy_seconds()
                t0 = time.monotonic()
                start_wall = time.time()
                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                a_ids = submit(a, "a", args.a_courses)
                b_ids = submit(b, "b", args.b_courses)
                ids = a_ids + b_ids

                def finished() -> bool:
                    counts = statuses(url, ids)
                    return counts.get("done", 0) + counts.get("dead_letter", 0) == len(ids)

                wait_until(finished, 3600, f"{len(ids)} courses", poll=0.5, stack=stack)
                wall = time.monotonic() - t0
                cpu, load1 = cpu_busy_seconds() - cpu0, os.getloadavg()[0]
                stop.set()
                with psycopg.connect(url) as conn:
                    rows = conn.execute(
                        "SELECT organization_id, status, extract(epoch FROM completed_at)::float8 FROM ai_course_jobs "
                        "WHERE id = ANY(%s)", (ids,)).fetchall()
                    spent = conn.execute("SELECT sum(tokens), sum(cost_usd), bool_and(cost_known) FROM ai_course_jobs "
                                         "WHERE id = ANY(%s)", (ids,)).fetchone()
            finally:
                stack.stop()
    finally:
        pg.close()

    dead = sum(1 for _, s, _ in rows if s == "dead_letter")
    print("timeline (every 30 s): t, courses in flight, done, dagster runs active, tokens the provider accepted in the last 30 s")
    for t, flight, done, runs in samples[5::6]:
        recent = sum(tok for at, tok in provider.log if t0 + t - 30 < at <= t0 + t)
        print(f"  {t:6.0f} s  in flight {flight:3d}  done {done:3d}  runs {runs}  tokens/30 s {recent}")
    a_done = sorted(t - start_wall for org, s, t in rows if org == a and s == "done")
    b_done = sorted(t - start_wall for org, s, t in rows if org == b and s == "done")
    accepted = provider.calls - provider.limited
    by_calls = accepted / args.rpm * 60
    by_tokens = provider.tokens / args.tpm * 60
    optimum = max(by_calls, by_tokens)
    binding = "tokens/TPM" if by_tokens >= by_calls else "calls/RPM"
    share_429 = provider.limited / max(1, provider.calls)
    a30 = a_done[29] if len(a_done) >= 30 else float("nan")
    b_last = b_done[-1] if len(b_done) == args.b_courses else float("nan")
    print(f"{len(ids)} model-path courses (A {args.a_courses}, B {args.b_courses} enqueued after A; 4 groups x 12 items), "
          f"{args.runs} concurrent runs x {args.per_run} courses, org cap {args.org_cap}; provider RPM {args.rpm}, "
          f"TPM {args.tpm}, {args.latency * 1000:.0f} ms per call")
    print(f"calls accepted {accepted}, tokens {provider.tokens} ({provider.tokens / max(1, accepted):.0f} per call); "
          f"job books: {spent[0]} tokens, cost ${spent[1]} (known: {spent[2]})")
    print(f"wall {wall:.1f} s vs budget-limited optimum {optimum:.1f} s ({binding} binds; calls/RPM {by_calls:.1f} s, "
          f"tokens/TPM {by_tokens:.1f} s): ratio {wall / optimum:.3f} (target <= 1.15)")
    print(f"429s: {provider.limited} of {provider.calls} calls = {share_429 * 100:.2f} % (target < 1 %)")
    print(f"B's last course done at {b_last:.1f} s; A's 30th at {a30:.1f} s, A's last at {a_done[-1] if a_done else float('nan'):.1f} s "
          f"(target: B's last before A's 30th: {'yes' if b_last < a30 else 'no'})")
    print(f"dead letters: {dead} (target 0)")
    print(f"machine: {cpu:.0f} CPU-s busy during the run = {cpu / wall:.2f} of {os.cpu_count()} cores "
          f"({cpu / len(ids):.2f} CPU-s per course, other users' processes included); load average {load0:.1f} "
          f"at the start, {load1:.1f} at the end")
    ok = wall <= 1.15 * optimum and share_429 < 0.01 and dead == 0 and b_last < a30
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
