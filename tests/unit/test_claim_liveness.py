"""Claim liveness without a database (issue 15): the last sign of life of a run's claims, the storage
failure codes, and the slots and schedules judged on an in-process Dagster instance. The Postgres queue
side is tests/integration/test_claim_liveness.py; the daemon-level proof is tests/e2e/test_e2e_crash.py."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from ignite_dagster.defs.courses.jobs import GENERATE_JOB
from ignite_dagster.queue.liveness import last_sign_of_life
from ignite_dagster.queue.staged import storage_failure
from ignite_dagster.storage.base import NotFound, PreconditionFailed


def test_last_sign_of_life_ignores_claims_taken_over_by_a_newer_attempt():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    a, b, c = (f"00000000-0000-0000-0000-00000000000{i}" for i in range(3))
    rows = {
        a: {"attempt": 1, "status": "processing", "last_heartbeat": t0 + timedelta(seconds=30), "completed_at": None,
            "updated_at": t0},
        b: {"attempt": 2, "status": "processing", "last_heartbeat": t0 + timedelta(seconds=90), "completed_at": None,
            "updated_at": t0},  # claimed again: attempt 2 is another run's
        c: {"attempt": 1, "status": "done", "last_heartbeat": t0, "completed_at": t0 + timedelta(seconds=40),
            "updated_at": t0 + timedelta(seconds=40)},
    }
    assert last_sign_of_life([(a, 1), (b, 1)], rows, t0) == t0 + timedelta(seconds=30)
    assert last_sign_of_life([(a, 1), (c, 1)], rows, t0) == t0 + timedelta(seconds=40)
    assert last_sign_of_life([(b, 1)], rows, t0 + timedelta(seconds=5)) == t0 + timedelta(seconds=5)  # its start


@pytest.mark.parametrize("exc, code", [
    (OSError(errno.EROFS, "Read-only file system"), "storage_error"),
    (OSError(errno.ENOSPC, "No space left on device"), "storage_error"),
    (PreconditionFailed("courses/x changed"), "storage_error"),
    (NotFound("courses/x"), None),
    (ValueError("bug"), None),
])
def test_storage_failures_have_their_own_reason_code(exc, code):
    found = storage_failure(exc)
    assert (found[0] if found else None) == code
    if found:
        assert found[2] is True  # retryable: storage comes back


def test_queued_runs_held_back_by_a_tag_limit_take_no_slot_of_the_run_queue(tmp_path):
    from dagster._core.test_utils import instance_for_test

    from ignite_dagster.defs.run_liveness import occupied_slots

    limits = [{"key": "ignite/queue", "value": "maintenance", "limit": 2}]
    with instance_for_test() as instance:
        for status in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING):
            create_run_for_test(instance, job_name="mark_stale", status=status, tags={"ignite/queue": "maintenance"})
        for _ in range(5):  # piled up behind the limit: the coordinator will not start them now
            create_run_for_test(instance, job_name="reconcile_queue", status=DagsterRunStatus.NOT_STARTED,
                                tags={"ignite/queue": "maintenance"})
        create_run_for_test(instance, job_name=GENERATE_JOB, status=DagsterRunStatus.NOT_STARTED)
        assert occupied_slots(instance, limits) == 3  # two in progress + the course run that starts next
        assert occupied_slots(instance, []) == 8


def test_a_sweep_schedule_skips_while_its_previous_run_is_in_flight():
    from dagster import build_schedule_context
    from dagster._core.test_utils import instance_for_test

    from ignite_dagster.defs.maintenance.jobs import schedules

    schedule = next(s for s in schedules if s.name == "mark_stale_every_minute")
    with instance_for_test() as instance:
        assert schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests
        create_run_for_test(instance, job_name="reconcile_queue", status=DagsterRunStatus.STARTED)  # another sweep
        assert schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests
        create_run_for_test(instance, job_name="mark_stale", status=DagsterRunStatus.STARTED)
        assert not schedule.evaluate_tick(build_schedule_context(instance=instance)).run_requests
