"""Run liveness: keeping the claims of waiting runs alive, failing dead runs and handing back their
claims, and the run capacity left once they are gone.

Every tick of a queue's claim sensor (``queue_sensors.py``; the daemon, every
IGNITE_SENSOR_INTERVAL_SECONDS) first looks after the runs it launched, then claims:

1. **Claims of queued and starting runs are kept alive.** A sensor claim has no heartbeat of its own until
   its run's process starts its Lease; the run may wait in Dagster's run queue for a while. The tick
   heartbeats (fenced by attempt) the claims of this job's QUEUED / NOT_STARTED / STARTING runs, so stale
   detection and the reconciler never take such a claim for dead. Started runs heartbeat their own.
2. **Dead runs are failed.** A STARTED run (of this job; the course sensor also judges other runs that
   carry claims, i.e. asset materializations) whose last sign of life in the queue (a heartbeat of one of its
   claims, a claim it finished, its start) is older than IGNITE_RUN_DEAD_AFTER_SECONDS is reported failed
   through the instance: its process is gone (a host crash, kill -9 of the process group, an OOM kill), and
   the default run launcher has no run-worker health check, so nothing else would ever end it. The run
   failure sensor then hands its claims back once (``release_or_fail``). Why the queue and not the
   process: it works with every run launcher (local processes, k8s, docker), the daemon and the run need
   not share a host, and a run that heartbeats is alive by the same rule stale detection uses.
3. **Capacity** is what is left of IGNITE_MAX_CONCURRENT_RUNS (and of the instance's run queue limit)
   after counting this job's in-flight runs *after step 2*: a zombie run holds its slot at most
   IGNITE_RUN_DEAD_AFTER_SECONDS, so capacity comes back by itself after any crash. A claimed job starts
   soon and never waits unheartbeated.
"""

from datetime import UTC, datetime, timedelta

from dagster import DagsterRunStatus, RunsFilter, RunStatusSensorContext

from ignite_dagster.config import load_settings
from ignite_dagster.defs.run_tags import JOBS_TAG, QUEUE_TAG, decode_claims
from ignite_dagster.queue import JobQueue

WAITING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING]
ACTIVE = [*WAITING, DagsterRunStatus.STARTED]


def _run_queue(instance) -> tuple[int | None, list]:
    """The instance run queue's limit (None: no queue) and its tag concurrency limits."""
    try:
        config = instance.get_concurrency_config().run_queue_config
    except Exception:  # noqa: BLE001 - instances without a run queue (ephemeral, tests)
        return None, []
    if config is None:
        return None, []
    limit = config.max_concurrent_runs
    return (limit if limit is not None and limit >= 0 else None), list(config.tag_concurrency_limits or [])


def active_runs(instance, job_name: str | None = None) -> int:
    return instance.get_runs_count(RunsFilter(job_name=job_name, statuses=ACTIVE) if job_name
                                   else RunsFilter(statuses=ACTIVE))


def _matches(run, rule) -> bool:
    value, want = run.tags.get(rule["key"]), rule.get("value")
    return value is not None and (want is None or isinstance(want, dict) or want == value)


def occupied_slots(instance, tag_limits: list) -> int:
    """Slots of the instance run queue that in-flight runs hold or queued runs will take first.

    Runs in progress hold one each. A queued run takes one too, unless a tag concurrency limit holds it
    back (the coordinator's rule): maintenance runs that pile up behind their limit of 2 under load
    must not look like a full queue, or the factory would stop claiming work while slots are free."""
    in_progress = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]))
    queued = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]))
    used = [sum(_matches(r, rule) for r in in_progress) for rule in tag_limits]
    taken = len(in_progress)
    for run in queued:
        rules = [i for i, rule in enumerate(tag_limits) if _matches(run, rule)]
        if any(used[i] >= tag_limits[i]["limit"] for i in rules):
            continue
        for i in rules:
            used[i] += 1
        taken += 1
    return taken


def free_runs(instance, job_name: str, configured: int) -> int:
    """Runs a sensor may request now for ``job_name``: its own cap minus its in-flight runs, and no more
    than the instance run queue can start (dead runs were failed before this is asked, see above)."""
    free = configured - active_runs(instance, job_name)
    limit, tag_limits = _run_queue(instance)
    if limit is not None:
        free = min(free, limit - occupied_slots(instance, tag_limits))
    return free


def fail_run_claims(context: RunStatusSensorContext, queue: JobQueue, table: str, reason_code: str,
                    message: str) -> None:
    """Hand back the claims a dead or canceled run still holds: a claim whose attempt never ran a stage
    goes back to pending without spending a retry, the others are failed (retryable). Fenced: jobs the run
    already marked, or that were reclaimed since, are untouched."""
    settings = load_settings()
    run = context.dagster_run
    for job_id, attempt in decode_claims(run.tags.get(JOBS_TAG, "")):
        status = queue.release_or_fail_claim(table, (job_id, attempt), f"Dagster run {run.run_id} {message}",
                                             reason_code, backoff_base=timedelta(seconds=settings.backoff_base_seconds),
                                             backoff_cap=timedelta(seconds=settings.backoff_cap_seconds))
        if status:
            context.log.info(f"{table} job {job_id} attempt {attempt} marked {status} ({reason_code})")


def keep_waiting_claims_alive(instance, job_name: str, table: str, queue) -> int:
    """Heartbeat the claims of this job's runs that have not started yet; returns how many are held."""
    claims = [c for run in instance.get_runs(RunsFilter(job_name=job_name, statuses=WAITING))
              for c in decode_claims(run.tags.get(JOBS_TAG, ""))]
    return queue.keep_claims_alive(table, claims)


def fail_dead_runs(instance, job_name: str | None, table: str | None, queue, dead_after: timedelta, log=None,
                   exclude_queues: tuple[str, ...] = ()) -> list[str]:
    """Report STARTED runs of ``job_name`` failed when the queue has seen no sign of life from them for
    ``dead_after`` (see the module docstring); returns their run ids. ``job_name`` None: every started run
    that carries claims, except those tagged ``ignite/queue`` in ``exclude_queues`` (so asset
    materializations, which claim jobs themselves, are judged too); their claims are looked up in both
    tables. Runs without claims are not judged (max_runtime in dagster.yaml
    is their backstop)."""
    from ignite_dagster.queue.liveness import last_sign_of_life

    records = [r for r in instance.get_run_records(RunsFilter(job_name=job_name, statuses=[DagsterRunStatus.STARTED]))
               if r.dagster_run.tags.get(JOBS_TAG) and r.dagster_run.tags.get(QUEUE_TAG) not in exclude_queues]
    if not records:
        return []
    claims = {r.dagster_run.run_id: decode_claims(r.dagster_run.tags[JOBS_TAG]) for r in records}
    rows = queue.claim_rows(table, sorted({job_id for cs in claims.values() for job_id, _ in cs}))
    now = datetime.now(UTC)
    dead = []
    for record in records:
        run = record.dagster_run
        started = datetime.fromtimestamp(record.start_time or record.create_timestamp.timestamp(), UTC)
        seen = last_sign_of_life(claims[run.run_id], rows, started)
        if now - seen < dead_after:
            continue
        fresh = instance.get_run_by_id(run.run_id)  # it may have ended since we listed it
        if fresh is None or fresh.status != DagsterRunStatus.STARTED:
            continue
        message = (f"run worker presumed dead: no sign of life in the job queue for {(now - seen).total_seconds():.0f} s "
                   f"(IGNITE_RUN_DEAD_AFTER_SECONDS={dead_after.total_seconds():.0f}); its process is gone (host "
                   "crash, killed process group) and the run launcher cannot tell. Its claims go back to the queue.")
        instance.report_run_failed(fresh, message)
        dead.append(run.run_id)
        if log is not None:
            log.warning(f"run {run.run_id}: {message}")
    return dead
