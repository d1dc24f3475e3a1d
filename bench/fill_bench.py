"""Fill benchmark: is the LLM fill as parallel as its batch plan allows, and does the cache cut calls?

A 4-group × 12-item course (2 study texts) is filled through ``ModelWriter`` against the loopback
OpenAI-compatible server with a fixed latency per call (default 200 ms) and concurrency 8. Printed side
by side from one run:

* measured fill wall time (median of ``--repeat`` runs, each a fresh client and connection pool, after
  one warm-up fill that pays the process's one-time costs and is printed on its own);
* the critical path the batch plan implies: ``ceil(calls / concurrency)`` waves × latency, where calls
  are the overview, the study texts and the item batches (all independent, all started at once);
* their ratio (target ≤ 1.25), and the best run's (less sensitive to other load on the machine: the
  overhead above the critical path is client CPU — request building and parsing in the SDK — and
  shrinks or grows with the CPU the process gets);
* the same request a second time with the object-storage cache: provider calls made and wall time.

Run: ``.venv/bin/python bench/fill_bench.py [--latency 0.2] [--concurrency 8] [--items-per-call 12]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ignite_dagster.config import Settings  # noqa: E402
from ignite_dagster.course.model import Group, Level  # noqa: E402
from ignite_dagster.course.request import CourseRequest  # noqa: E402
from ignite_dagster.course.skeleton import ArithmeticMeta, Skeleton, SkeletonItem, StudyTextSlot  # noqa: E402
from ignite_dagster.generation.llm import ModelWriter  # noqa: E402
from ignite_dagster.generation.stages.validate_normalize import validate_and_normalize  # noqa: E402
from ignite_dagster.storage.local import LocalObjectStore  # noqa: E402
from tests.support.openai_server import CHAT, OpenAICompatServer, ScriptedCourseModel  # noqa: E402

GROUPS, PER_GROUP, STUDY_TEXTS = 4, 12, 2


def skeleton() -> Skeleton:
    items = []
    for g in range(GROUPS):
        for k in range(PER_GROUP):
            a, b = g + 2, k + 1
            items.append(SkeletonItem(
                id=len(items), groupId=g, clusterId=f"g{g}-c{k // 3 + 1}", variant=str(k % 3 + 1), mode="options",
                meta=ArithmeticMeta(op="add", a=a, b=b, expected=a + b),
            ))
    n = len(items)
    return Skeleton(
        course_id="bench-addition", subject="addition", grade_band="K-2", mode="options",
        groups=[Group(id=g, name=f"Adding {g + 2}") for g in range(GROUPS)],
        levels=[Level(id=1, title="First half", start=0, end=n // 2 - 1), Level(id=2, title="Second half", start=n // 2, end=n - 1)],
        items=items,
        study_text_slots=[StudyTextSlot(id=f"st-{i + 1}", order=i, wantsImage=True) for i in range(STUDY_TEXTS)],
        topic="addition",
    )


def _serve(conn: Connection, latency: float) -> None:
    """The provider in its own process: in-process server threads would compete with the client for
    the GIL and inflate the client's measured overhead (a real provider is another machine)."""
    with OpenAICompatServer(latency=latency) as server:
        server.respond_with(CHAT, ScriptedCourseModel())
        conn.send(server.base_url)
        while True:
            command = conn.recv()
            if command == "stop":
                return
            if command == "reset":
                server.reset()
                conn.send(None)
            elif command == "stats":
                conn.send((len(server.requests), server.max_in_flight))


class RemoteServer:
    """Handle on the provider process: ``reset()``, ``stats()`` → (requests, max in flight)."""

    def __init__(self, latency: float) -> None:
        self._conn, child = mp.Pipe()
        self._proc = mp.get_context("spawn").Process(target=_serve, args=(child, latency), daemon=True)
        self._proc.start()
        self.base_url: str = self._conn.recv()

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def stats(self) -> tuple[int, int]:
        self._conn.send("stats")
        return self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        self._proc.join(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="fixed server latency per call, seconds")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--items-per-call", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    sk = skeleton()
    request = CourseRequest(course_id=sk.course_id, subject="addition", grade="1", notes="Use fruit.", mode="options")
    server = RemoteServer(args.latency)
    try:
        return run(args, server, sk, request)
    finally:
        server.stop()


def run(args: argparse.Namespace, server: RemoteServer, sk: Skeleton, request: CourseRequest) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            openai_api_key="bench-key", openai_base_url=server.base_url, text_model="test-model",
            llm_concurrency=args.concurrency, llm_prices='{"test-model": {"input": 0.15, "output": 0.6}}',
        )
        filler = ModelWriter(settings, items_per_call=args.items_per_call, use_cache=False)
        plan = filler.plan(sk)
        calls = len(plan)
        waves = math.ceil(calls / args.concurrency)
        critical = waves * args.latency

        # The first fill of a process pays one-time costs (lazy imports, the TLS context, schema
        # generation caches); it is shown on its own and left out of the median.
        server.reset()
        started = time.perf_counter()
        asyncio.run(filler.fill(sk, request))
        cold_process = time.perf_counter() - started

        walls = []
        for _ in range(args.repeat):
            server.reset()
            started = time.perf_counter()
            result = asyncio.run(filler.fill(sk, request))
            walls.append(time.perf_counter() - started)
            made, _ = server.stats()
            assert made == calls, (made, calls)
        course, issues = validate_and_normalize(result.course, sk, None)
        errors = [i for i in issues if i.severity == "error"]
        wall = statistics.median(walls)

        print(f"course: {GROUPS} groups x {PER_GROUP} items, {STUDY_TEXTS} study texts; valid={course is not None and not errors}")
        print(f"batch plan: {calls} calls (1 overview, {STUDY_TEXTS} study texts, {calls - 1 - STUDY_TEXTS} item batches of <= {args.items_per_call})")
        print(f"latency {args.latency * 1000:.0f} ms/call, concurrency {args.concurrency}, max in flight seen {server.stats()[1]}")
        print(f"critical path: ceil({calls}/{args.concurrency}) = {waves} wave(s) x {args.latency * 1000:.0f} ms = {critical * 1000:.0f} ms")
        print(f"first fill of the process (one-time warm-up, not in the median): {cold_process * 1000:.0f} ms")
        print(f"fill wall time: median {wall * 1000:.0f} ms over {args.repeat} runs (min {min(walls) * 1000:.0f}, max {max(walls) * 1000:.0f})")
        print(f"ratio wall/critical: {wall / critical:.2f} (target <= 1.25); best run {min(walls) / critical:.2f}")
        print(f"usage per fill: calls={result.usage.calls} tokens_in={result.usage.tokens_in} tokens_out={result.usage.tokens_out} cost_usd={result.usage.cost_usd}")

        store = LocalObjectStore(Path(tmp))
        cached = ModelWriter(settings, store, items_per_call=args.items_per_call)
        server.reset()
        t0 = time.perf_counter()
        asyncio.run(cached.fill(sk, request))
        cold = time.perf_counter() - t0
        cold_calls = server.stats()[0]
        server.reset()
        t0 = time.perf_counter()
        warm_result = asyncio.run(cached.fill(sk, request))
        warm = time.perf_counter() - t0
        print(
            f"cache: first fill {cold_calls} provider calls in {cold * 1000:.0f} ms; same request again "
            f"{server.stats()[0]} provider calls, {warm_result.usage.cache_hits} cache hits, {warm * 1000:.0f} ms"
        )
        ok = wall / critical <= 1.25 and server.stats()[0] == 0 and not errors
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
