"""What the course and media sensors share: run capacity, claiming into batches, keeping claims alive,
failing dead runs and their claims.

Every tick of a queue's claim sensor (the daemon, every IGNITE_SENSOR_INTERVAL_SECONDS) first looks after
the runs it launched, then claims:

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

Claims happen one at a time through the queue's get_next_pending_* function, inside a time budget far
below Dagster's 60 s sensor limit.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from dagster import DagsterRunStatus, RunRequest, RunsFilter, RunStatusSensorContext

from ignite_dagster.config import load_settings
from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import QueueResource
from ignite_dagster.queue import JobQueue

WAITING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING]
ACTIVE = [*WAITING, DagsterRunStatus.STARTED]
TICK_BUDGET_SECONDS = 15.0
JOBS_TAG = "ignite/jobs"
QUEUE_TAG = "ignite/queue"  # course | media on the sensors' jobs, maintenance on the sweeps


def encode_claims(claims: list[tuple[UUID | str, int]]) -> str:
    return ",".join(f"{job_id}:{attempt}" for job_id, attempt in claims)


def decode_claims(value: str) -> list[tuple[UUID, int]]:
    out = []
    for part in filter(None, (value or "").split(",")):
        job_id, attempt = part.rsplit(":", 1)
        out.append((UUID(job_id), int(attempt)))
    return out


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


def plan_runs(claim_one: Callable[[], list], *, free: int, per_run: int,
              budget_s: float = TICK_BUDGET_SECONDS) -> list[list]:
    """Claim up to free × per_run jobs with ``claim_one`` (one job per call); returns one batch per run."""
    deadline = time.monotonic() + budget_s
    batches: list[list] = []
    for _ in range(max(0, free)):
        batch: list = []
        while len(batch) < per_run and time.monotonic() < deadline:
            claimed = claim_one()
            if not claimed:
                break
            batch.extend(claimed)
        if not batch:
            break
        batches.append(batch)
        if len(batch) < per_run:
            break  # queue drained
    return batches


def fail_run_claims(context: RunStatusSensorContext, queue: JobQueue, table: str, reason_code: str,
                    message: str) -> None:
    """Hand back the claims a dead or canceled run still holds: a claim whose attempt never ran a stage
    goes back to pending without spending a retry, the others are failed (retryable). Fenced: jobs the run
    already marked, or that were reclaimed since, are untouched."""
    from ignite_dagster.queue.lease import release_or_fail

    settings = load_settings()
    run = context.dagster_run
    for job_id, attempt in decode_claims(run.tags.get(JOBS_TAG, "")):
        status = release_or_fail(queue, table, (job_id, attempt), f"Dagster run {run.run_id} {message}", reason_code,
                                 backoff_base=timedelta(seconds=settings.backoff_base_seconds),
                                 backoff_cap=timedelta(seconds=settings.backoff_cap_seconds))
        if status:
            context.log.info(f"{table} job {job_id} attempt {attempt} marked {status} ({reason_code})")


def keep_waiting_claims_alive(instance, job_name: str, table: str, queue) -> int:
    """Heartbeat the claims of this job's runs that have not started yet; returns how many are held."""
    from ignite_dagster.queue.lease import keep_alive

    claims = [c for run in instance.get_runs(RunsFilter(job_name=job_name, statuses=WAITING))
              for c in decode_claims(run.tags.get(JOBS_TAG, ""))]
    return keep_alive(queue, table, claims)


def fail_dead_runs(instance, job_name: str | None, table: str | None, queue, dead_after: timedelta, log=None,
                   exclude_queues: tuple[str, ...] = ()) -> list[str]:
    """Report STARTED runs of ``job_name`` failed when the queue has seen no sign of life from them for
    ``dead_after`` (see the module docstring); returns their run ids. ``job_name`` None: every started run
    that carries claims, except those tagged ``ignite/queue`` in ``exclude_queues`` (so asset
    materializations, which claim jobs themselves, are judged too); their claims are looked up in both
    tables. Runs without claims are not judged (max_runtime in dagster.yaml
    is their backstop)."""
    from ignite_dagster.queue.lease import claim_rows, last_sign_of_life

    records = [r for r in instance.get_run_records(RunsFilter(job_name=job_name, statuses=[DagsterRunStatus.STARTED]))
               if r.dagster_run.tags.get(JOBS_TAG) and r.dagster_run.tags.get(QUEUE_TAG) not in exclude_queues]
    if not records:
        return []
    claims = {r.dagster_run.run_id: decode_claims(r.dagster_run.tags[JOBS_TAG]) for r in records}
    rows = claim_rows(queue, table, sorted({job_id for cs in claims.values() for job_id, _ in cs}))
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


ORG_TAG = "ignite/org"
COURSE_TAG = "ignite/course"


def course_run_tags(jobs: list) -> dict[str, str]:
    """Tags that make a run findable by organization and course on the Runs page.

    ``ignite/org`` and ``ignite/course`` hold the id when the run works one (``multiple`` otherwise);
    every organization and course of the run also gets its own key (``ignite/org/<id>``,
    ``ignite/course/<id>``), because the Runs page filters by exact tag value and a batched run holds
    several courses. ``ignite/courses`` lists them for reading. (Added by the lead for issue 12.)"""
    orgs = sorted({str(j.organization_id) for j in jobs})
    courses = sorted({j.course_id for j in jobs})
    tags = {
        ORG_TAG: orgs[0] if len(orgs) == 1 else "multiple",
        COURSE_TAG: courses[0] if len(courses) == 1 else "multiple",
        "ignite/courses": ",".join(courses)[:1000],
    }
    tags.update({f"{ORG_TAG}/{org}": "true" for org in orgs})
    tags.update({f"{COURSE_TAG}/{course}": "true" for course in courses})
    return tags


def claims_run_request(kind: str, op_name: str, batch: list) -> RunRequest:
    """One run for a batch of claims; run_key ``<kind>:<first job id>:<attempt>`` is unique per claim (a
    failed run consumes its key forever; a retry is a new attempt, hence a new key)."""
    claims = encode_claims([(j.id, j.attempt) for j in batch])
    first = batch[0]
    return RunRequest(
        run_key=f"{kind}:{first.id}:{first.attempt}",
        run_config={"ops": {op_name: {"config": {"jobs": claims}}}},
        tags={JOBS_TAG: claims, **course_run_tags(batch)},
    )


def build_queue_sensors(*, kind: str, table: str, job, op_name: str, claim: Callable, per_run: Callable[[object], int],
                        interval_seconds: int) -> tuple:
    """The claim sensor, the run-failure sensor and the run-canceled sensor of one queue.

    ``claim(queue, worker_id)`` claims one job (the queue's get_next_pending_* function);
    ``per_run(settings)`` is the batch size."""
    from dagster import (
        DefaultSensorStatus,
        RunFailureSensorContext,
        SensorEvaluationContext,
        SensorResult,
        SkipReason,
        run_failure_sensor,
        run_status_sensor,
        sensor,
    )

    @sensor(name=f"{kind}_jobs_sensor", job=job, minimum_interval_seconds=interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description=f"Claims pending {table} jobs one at a time up to free run capacity and launches "
            f"{job.name} runs; run_key = {kind}:<first job id>:<attempt>.")
    def claim_sensor(context: SensorEvaluationContext, queue: QueueResource):
        settings, jobs = load_settings(), queue.queue
        keep_waiting_claims_alive(context.instance, job.name, table, jobs)
        dead_after = timedelta(seconds=settings.run_dead_after_seconds)
        fail_dead_runs(context.instance, job.name, table, jobs, dead_after, context.log)
        if kind == "course":  # runs that claim jobs themselves (asset materializations), judged once, here
            fail_dead_runs(context.instance, None, None, jobs, dead_after, context.log,
                           exclude_queues=("course", "media"))
        free = free_runs(context.instance, job.name, settings.max_concurrent_runs)
        if free <= 0:
            return SkipReason("run capacity full")
        worker = f"dagster-sensor:{context.cursor or 'tick'}"
        batches = plan_runs(lambda: claim(jobs, worker), free=free, per_run=per_run(settings))
        if not batches:
            return SkipReason(f"no claimable {kind} jobs")
        context.log.info(f"claimed {sum(map(len, batches))} {kind} job(s) into {len(batches)} run(s)")
        return SensorResult(
            run_requests=[claims_run_request(kind, op_name, b) for b in batches],
            dynamic_partitions_requests=[courses_partitions.build_add_request(
                sorted({j.course_id for b in batches for j in b}))],
        )

    @run_failure_sensor(name=f"{kind}_run_failure_sensor", monitored_jobs=[job],
                        default_status=DefaultSensorStatus.RUNNING,
                        description=f"Hands back {table} jobs still held by a failed run (dead runs included): back to "
                        "pending when no stage ran, else failed (retryable).")
    def failure_sensor(context: RunFailureSensorContext, queue: QueueResource):
        message = context.failure_event.message if context.failure_event else "failed"
        fail_run_claims(context, queue.queue, table, "run_failed", f"failed: {message}"[:1500])

    @run_status_sensor(name=f"{kind}_run_canceled_sensor", run_status=DagsterRunStatus.CANCELED,
                       monitored_jobs=[job], default_status=DefaultSensorStatus.RUNNING,
                       description=f"Marks {table} jobs still held by a canceled run as failed (retryable).")
    def canceled_sensor(context: RunStatusSensorContext, queue: QueueResource):
        fail_run_claims(context, queue.queue, table, "run_canceled", "was canceled")

    return claim_sensor, failure_sensor, canceled_sensor
