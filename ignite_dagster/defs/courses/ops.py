"""The generation stages as ops, mapped over the courses a run holds (one DynamicOutput per job).

Each op is one stage for one course, so the UI shows every stage of every course with its own timing,
logs and failure; a failing course stops only its own branch. The run processes its courses in one
process (in_process executor, in-memory hand-off), which is what makes batching cheap.
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

from ignite_dagster.defs.claim_sensors import JOBS_TAG, course_run_tags, decode_claims, encode_claims
from ignite_dagster.defs.courses.events import finished_course_events
from ignite_dagster.defs.courses.keys import MODEL_POOL
from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import FactoryResource


class ClaimedJobsConfig(Config):
    jobs: str = Field(default="", description="Claims handed over by the sensor: 'jobId:attempt,...'.")
    claim_now: int = Field(default=0, ge=0, le=50, description="Manual runs: claim up to this many pending jobs now.")


def _mapping_key(course_id: str, job_id: UUID) -> str:
    return f"{course_id.replace('-', '_')}__{job_id.hex[:8]}"


@op(out=DynamicOut(), description="Load the claimed course jobs (or claim now) and fan out one branch per course.")
def claimed_course_jobs(context: OpExecutionContext, config: ClaimedJobsConfig, factory: FactoryResource):
    queue = factory.queue
    if config.claim_now:
        jobs = queue.claim_course_jobs(f"dagster:{context.run_id}", limit=config.claim_now)
        if jobs:
            context.instance.add_dynamic_partitions(courses_partitions.name, sorted({j.course_id for j in jobs}))
            context.instance.add_run_tags(context.run_id, {JOBS_TAG: encode_claims([(j.id, j.attempt) for j in jobs]),
                                                           **course_run_tags(jobs)})
    else:
        jobs = []
        for job_id, attempt in decode_claims(config.jobs):
            job = queue.get(job_id)
            if job is None or job.status != "processing" or job.attempt != attempt:
                context.log.warning(f"job {job_id} attempt {attempt} is no longer held (now "
                                    f"{getattr(job, 'status', 'missing')}, attempt {getattr(job, 'attempt', '-')}); skipped")
                continue
            jobs.append(job)
    context.log.info(f"{len(jobs)} course job(s): " + ", ".join(f"{j.course_id}#{j.attempt}" for j in jobs))
    for job in jobs:  # the job row names its run (job status links it in the UI)
        queue.set_run_id(job.id, "ai_course_jobs", job.attempt, context.run_id)
    worker = factory.worker()
    for job in jobs:
        try:
            work = worker.begin(job)
        except Exception as exc:  # the job row already carries the failure
            context.log.error(f"{job.course_id}: {exc}")
            continue
        yield DynamicOutput(work, mapping_key=_mapping_key(job.course_id, job.id))


def _stage(context: OpExecutionContext, factory: FactoryResource, name: str, work):
    from ignite_dagster.queue.errors import LostClaim
    from ignite_dagster.queue.staged import JobAborted

    try:
        return getattr(factory.worker(), name)(work)
    except JobAborted as exc:
        raise Failure(description=f"{work.label}: {exc}",
                      metadata={"job_id": str(work.job.id), "reason_code": exc.reason_code,
                                "job_status": str(exc.new_status)}) from None
    except LostClaim as exc:
        raise Failure(description=f"{work.label}: {exc}; stopped without writing",
                      metadata={"job_id": str(work.job.id), "reason_code": "lost_claim"}) from None


@op(description="Choose a deterministic pack or skeleton + LLM.")
def select_strategy(context: OpExecutionContext, factory: FactoryResource, work):
    work = _stage(context, factory, "select_strategy", work)
    context.log.info(f"{work.job.course_id}: {work.choice.kind} ({work.choice.reason})")
    return work


@op(description="Fix the course structure: ids, groups, clusters, variants, levels, arithmetic; on the model "
                 "path, start the course's fill in the background so the run's courses fill side by side.")
def build_skeleton(context: OpExecutionContext, factory: FactoryResource, work):
    work = _stage(context, factory, "build_skeleton", work)
    work = factory.worker().prefill(work)
    started = " (fill started in the background)" if work.pending_fill is not None else ""
    context.log.info(f"{work.job.course_id}: {len(work.skeleton.items)} items, {len(work.skeleton.groups)} groups{started}")
    return work


@op(description="Fill content from the pack or the model (bounded concurrency, cached).", pool=MODEL_POOL)
def fill(context: OpExecutionContext, factory: FactoryResource, work):
    work = _stage(context, factory, "fill", work)
    u = work.usage
    if u is not None:
        context.log.info(f"{work.job.course_id}: calls={u.calls} tokens_in={u.tokens_in} tokens_out={u.tokens_out} "
                         f"cache_hits={u.cache_hits} cost_usd={u.cost_usd}")
    return work


@op(description="Deterministic normalisation, then validation codes.")
def validate_normalize(context: OpExecutionContext, factory: FactoryResource, work):
    work = _stage(context, factory, "validate_normalize", work)
    errors = [i.code for i in work.issues if i.severity == "error"]
    context.log.info(f"{work.job.course_id}: {len(errors)} error(s) {sorted(set(errors))}")
    return work


@op(description="Bounded repair of failing items (model path only).", pool=MODEL_POOL)
def repair(context: OpExecutionContext, factory: FactoryResource, work):
    work = _stage(context, factory, "repair", work)
    context.log.info(f"{work.job.course_id}: {work.repair_rounds} repair round(s)")
    return work


@op(description="Write course.json (CAS, media kept), metadata, catalog row, media jobs; complete the job.")
def persist(context: OpExecutionContext, factory: FactoryResource, work) -> None:
    work = _stage(context, factory, "persist", work)
    for event in finished_course_events(work, factory.store, source="queue"):
        context.log_event(event)
