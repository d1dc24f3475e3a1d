"""The media_complete asset check run through Dagster for one partition, as the UI launches it (real
Postgres behind the code location's services); attachment itself is tests/unit/test_media_attach.py."""

from __future__ import annotations

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from ignite_dagster.course_jobs.persist import write_course_json
from ignite_dagster.storage import LocalObjectStore
from tests.support.media import attach_every_study_text, water_cycle_course


@pytest.fixture(scope="module")
def course() -> dict:
    return water_cycle_course("wc-attach")


def test_media_complete_check_runs_through_dagster_for_a_partition(db_url, tmp_path, monkeypatch, course):
    """The check as the UI launches it: the implicit asset job, one partition, the code location's resources."""
    from tests.support.code_location import code_location

    root = tmp_path / "storage"
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IGNITE_STORAGE_ROOT", str(root))
    store = LocalObjectStore(root)
    write_course_json(store, course)
    check_key = AssetCheckKey(AssetKey("course_media"), "media_complete")
    job = code_location().resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(),
                                                                   asset_check_selection={check_key})
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("courses", ["wc-attach"])
        first = job.execute_in_process(instance=instance, tags={"dagster/partition": "wc-attach"}, raise_on_error=False)
        attach_every_study_text(store, course, "wc-attach")
        second = job.execute_in_process(instance=instance, tags={"dagster/partition": "wc-attach"}, raise_on_error=False)
    evals = [e.asset_check_evaluation_data for r in (first, second) for e in r.all_events
             if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [e.passed for e in evals] == [False, True]
    assert {e.partition for e in evals} == {"wc-attach"}
    assert evals[0].metadata["pending_markers"].value == 2
