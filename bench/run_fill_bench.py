"""Courses of one run are filled side by side: 10 model-path courses in one ``generate_courses`` run vs
one course alone, against the scripted OpenAI-compatible server at a fixed latency per call.

Both sides run the real Dagster job in process (``execute_in_process``, the in-process executor the
sensor's runs use) against a real Postgres and local storage; the "one course" side is the baseline.
Target (issue "The model path proven against a real model server"): 10 courses within 1.3× the wall time
of one.

    .venv/bin/python bench/run_fill_bench.py [--courses 10] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster import DagsterInstance  # noqa: E402

from ignite_dagster.course.request import CourseRequest  # noqa: E402
from ignite_dagster.course_jobs.submit import submit_course_request  # noqa: E402
from ignite_dagster.definitions import defs  # noqa: E402
from ignite_dagster.defs.courses.jobs import GENERATE_JOB  # noqa: E402
from ignite_dagster.queue import JobQueue  # noqa: E402
from ignite_dagster.storage.local import LocalObjectStore  # noqa: E402
from tests.support.openai_server import CHAT, OpenAICompatServer, ScriptedCourseModel  # noqa: E402
from tests.support.pg import TestPostgres  # noqa: E402

CONCURRENCY = 64
SUBJECTS = ["fractions", "photosynthesis", "volcanoes", "decimals", "the solar system", "magnets", "rivers",
            "poetry", "plants", "weather"]


def run_courses(pg: TestPostgres, server: OpenAICompatServer, n: int, tag: str) -> float:
    """Wall seconds of one generate_courses run working ``n`` non-pack courses (all must end done)."""
    db_url = pg.fresh()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DATABASE_URL": db_url, "IGNITE_STORAGE_ROOT": tmp, "OPENAI_API_KEY": "bench",
               "OPENAI_BASE_URL": server.base_url, "IGNITE_TEXT_MODEL": "test-model", "IGNITE_LLM_CONCURRENCY": str(CONCURRENCY)}
        os.environ.update(env)
        with psycopg.connect(db_url, autocommit=True) as conn:
            org = conn.execute("INSERT INTO organizations (name) VALUES ('bench') RETURNING id").fetchone()[0]
        queue, store = JobQueue(db_url), LocalObjectStore(Path(tmp))
        ids = []
        for i in range(n):
            request = CourseRequest(course_id=f"{tag}-{i}", subject=SUBJECTS[i % len(SUBJECTS)], grade_band="3-5",
                                    items_per_group=12, groups_count=4)
            ids.append(submit_course_request(queue, store, request, organization_id=org).job.id)
        with DagsterInstance.ephemeral() as instance:
            t0 = time.monotonic()
            result = defs.resolve_job_def(GENERATE_JOB).execute_in_process(
                instance=instance, raise_on_error=False,
                run_config={"ops": {"claimed_course_jobs": {"config": {"claim_now": n}}}})
            wall = time.monotonic() - t0
        statuses = [queue.get(i).status for i in ids]
        if not result.success or set(statuses) != {"done"}:
            raise SystemExit(f"{tag}: run success={result.success}, statuses {statuses}")
        return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--courses", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per model call")
    args = parser.parse_args()
    pg = TestPostgres()
    try:
        with OpenAICompatServer(latency=args.latency) as server:
            server.respond_with(CHAT, ScriptedCourseModel())
            run_courses(pg, server, 1, "warm")  # imports, first connections
            one = run_courses(pg, server, 1, "one")
            many = run_courses(pg, server, args.courses, "many")
            calls_per_course = len(server.requests_to(CHAT)) / (2 + args.courses)
    finally:
        pg.close()
    ratio = many / one
    print(f"{args.courses} model-path courses (4 groups x 12 items, {calls_per_course:.0f} calls each, "
          f"{args.latency * 1000:.0f} ms per call) in one run: {many:.2f} s; one course: {one:.2f} s; "
          f"ratio {ratio:.2f} (target <= 1.3)")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
