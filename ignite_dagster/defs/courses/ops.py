"""The course ops: one fan-out op that claims and prepares the run's courses, one ``finish_course`` step
per course (a DynamicOutput per job).

Why this layout: the in-process executor runs one step at a time, in plan order. With an op per stage
per course, every fill step ran before any validate or persist step, so each course waited for the
slowest fill of its run (measured: 732–734 s for every course of a run, median = max). Now
``claimed_course_jobs`` prepares each course (strategy, skeleton) and starts its *finish* — fill →
validate → repair → persist — in the background (``CourseWorker.start``): each course is persisted as
soon as its own fill and checks are done, whatever the step order. ``finish_course`` collects one
course's outcome and reports it: its partition's materializations and checks, or the failure (a failed
course is a failed step, its reason in the run's logs). Two ops instead of six also mean fewer events
per course. Stage timings and progress stay on the job row and its ``job_events``.
"""


from uuid import UUID

from dagster import (
    Config,
    DynamicOut,
    DynamicOutput,
    Failure,
    OpExecutionContext,
    op,
)
from pydantic import Field

from ignite_dagster.config import load_settings
from ignite_dagster.course_jobs.stages import FINISH, PREPARE, chain
from ignite_dagster.defs.courses.events import finished_course_events
from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import ModelResource, QueueResource, StorageResource, course_worker
from ignite_dagster.defs.run_tags import JOBS_TAG, course_run_tags, decode_claims, encode_claims


class ClaimedJobsConfig(Config):
    jobs: str = Field(default="", description="Claims handed over by the sensor: 'jobId:attempt,...'.")
    claim_now: int = Field(default=0, ge=0, le=50, description="Manual runs: claim up to this many pending jobs now.")


def _mapping_key(course_id: str, job_id: UUID) -> str:
    return f"{course_id.replace('-', '_')}__{job_id.hex[:8]}"


@op(out=DynamicOut(), description=f"Load the claimed course jobs (or claim now), run {chain(PREPARE)} for each, "
                                  f"start its {chain(FINISH)} in the background, and fan out one finish_course step "
                                  "per course.")
def claimed_course_jobs(context: OpExecutionContext, config: ClaimedJobsConfig, queue: QueueResource,
                        storage: StorageResource, model: ModelResource):
    job_queue = queue.queue
    if config.claim_now:
        jobs = job_queue.claim_course_jobs(f"dagster:{context.run_id}", limit=config.claim_now)
        if jobs:
            context.instance.add_dynamic_partitions(courses_partitions.name, sorted({j.course_id for j in jobs}))
            context.instance.add_run_tags(context.run_id, {JOBS_TAG: encode_claims([(j.id, j.attempt) for j in jobs]),
                                                           **course_run_tags(jobs)})
    else:
        claims = decode_claims(config.jobs)
        rows = job_queue.stamp_course_run(context.run_id, claims)  # one statement: the rows, the run on those held
        jobs = []
        for job_id, attempt in claims:
            job = rows.get(job_id)
            if job is None or job.status != "processing" or job.attempt != attempt:
                context.log.warning(f"job {job_id} attempt {attempt} is no longer held (now "
                                    f"{getattr(job, 'status', 'missing')}, attempt {getattr(job, 'attempt', '-')}); skipped")
                continue
            jobs.append(job)
    context.log.info(f"{len(jobs)} course job(s): " + ", ".join(f"{j.course_id}#{j.attempt}" for j in jobs))
    if config.claim_now:  # the job row names its run (job status links it in the UI); the sensor's are stamped
        job_queue.stamp_course_run(context.run_id, [(j.id, j.attempt) for j in jobs])
    worker = course_worker(queue, storage, model)
    for job in jobs:
        try:
            work = worker.begin(job)
        except Exception as exc:  # the job row already carries the failure
            context.log.error(f"{job.course_id}: {exc}")
            continue
        work = worker.prepare(work)  # a failure stays on work.error: the course's own step reports it
        if work.error is None:
            started = " (finishing in the background)" if work.pending is not None else ""
            context.log.info(f"{job.course_id}: {work.choice.kind} ({work.choice.reason}); {len(work.skeleton.items)} "
                             f"items, {len(work.skeleton.groups)} groups{started}")
        yield DynamicOutput(work, mapping_key=_mapping_key(job.course_id, job.id))


@op(description=f"Collect one course: its {chain(FINISH)} ran in the background as soon as its skeleton "
                 "existed; report its materializations and checks, or fail with its reason.")
def finish_course(context: OpExecutionContext, queue: QueueResource, storage: StorageResource, model: ModelResource,
                  work) -> None:
    from ignite_dagster.queue.errors import LostClaim
    from ignite_dagster.queue.staged import JobAborted

    try:
        work = course_worker(queue, storage, model).collect(work)
    except JobAborted as exc:
        raise Failure(description=f"{work.label}: {exc}",
                      metadata={"job_id": str(work.job.id), "reason_code": exc.reason_code,
                                "job_status": str(exc.new_status)}) from None
    except LostClaim as exc:
        raise Failure(description=f"{work.label}: {exc}; stopped without writing",
                      metadata={"job_id": str(work.job.id), "reason_code": "lost_claim"}) from None
    u, s = work.usage, work.result.get("summary", {})
    spend = (f", calls={u.calls} tokens_in={u.tokens_in} tokens_out={u.tokens_out} cache_hits={u.cache_hits} "
             f"cost_usd={u.cost_usd}") if u is not None else ""
    context.log.info(f"{work.job.course_id}: done; {s.get('repairRounds', 0)} repair round(s), "
                     f"stage ms {work.stage_ms}{spend}")
    for event in finished_course_events(work, storage.store, source="queue", settings=load_settings()):
        context.log_event(event)
