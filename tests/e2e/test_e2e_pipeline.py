"""End to end through the real Dagster daemon: queue → sensor → run → ops → storage, metadata, assets."""

from __future__ import annotations

import json
import os

import psycopg
import pytest
from dagster import AssetKey, DagsterInstance

from ignite_dagster.course.model import parse_course
from ignite_dagster.course.validation import validate_course
from ignite_dagster.queue import JobQueue
from tests.support.jobs import new_course
from tests.support.stack import start_stack, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(db_url, tmp_path):
    s = start_stack(db_url, tmp_path)
    yield s
    s.stop()


def _instance(stack) -> DagsterInstance:
    os.environ["DATABASE_URL"] = stack.env["DATABASE_URL"]
    return DagsterInstance.from_config(stack.env["DAGSTER_HOME"])


def test_three_pack_courses_end_done_valid_with_metadata_catalog_and_materializations(stack, db_url, org_id, tmp_path):
    queue = JobQueue(db_url)
    specs = [("addition-e2e", "addition", "options"), ("division-e2e", "division", "numeric"),
             ("subtraction-e2e", "subtraction", "options")]
    ids = [queue.enqueue_course(new_course(cid, subject=subj, mode=mode), organization_id=org_id).job.id
           for cid, subj, mode in specs]

    def all_done():
        jobs = [queue.get(i) for i in ids]
        failed = [j for j in jobs if j.status in ("failed", "dead_letter")]
        assert not failed, [(j.course_id, j.error) for j in failed]
        return all(j.status == "done" for j in jobs)

    wait_until(all_done, 180, "three course jobs done", stack=stack)

    storage = tmp_path / "storage"
    with psycopg.connect(db_url) as conn:
        for (cid, _, mode), job_id in zip(specs, ids, strict=True):
            doc = json.loads((storage / "courses" / cid / "course.json").read_text())
            course, issues = parse_course(doc)
            assert course is not None and not [i for i in validate_course(course, None, None) if i.severity == "error"]
            assert doc["generation"]["jobId"] == str(job_id) and doc["generation"]["strategy"] == "deterministic"
            assert {it["mode"] for it in doc["items"]} == {mode}
            meta = conn.execute("SELECT organization_id, item_count, latest_job_id FROM course_metadata WHERE id = %s",
                                (cid,)).fetchone()
            assert meta == (org_id, len(doc["items"]), job_id)
            assert conn.execute("SELECT count(*) FROM catalog_updates WHERE course_id = %s", (cid,)).fetchone()[0] == 1
            job = queue.get(job_id)
            assert job.result_path == f"courses/{cid}/course.json" and job.summary["items"] == len(doc["items"])
            steps = [e.step for e in queue.events(job_id)]
            assert steps[-6:] == ["select_strategy", "build_skeleton", "fill", "validate_normalize", "repair", "persist"]

    instance = _instance(stack)
    try:
        assert set(instance.get_dynamic_partitions("courses")) >= {s[0] for s in specs}
        for key in ("course_content", "course_metadata"):
            assert instance.get_materialized_partitions(AssetKey(key)) >= {s[0] for s in specs}
        record = instance.get_latest_materialization_event(AssetKey("course_content"))
        md = record.asset_materialization.metadata
        assert {"strategy", "items", "job_id", "attempt", "storage_path", "duration_ms", "tokens_in"} <= set(md)
    finally:
        instance.dispose()
