"""The course ops: ``claimed_course_jobs`` claims and prepares the run's courses and hands them on as one
output; ``finish_courses``, one step per run, reports every course as soon as it is done.

Why the courses finish in the background: the in-process executor runs one step at a time, in plan
order. With an op per stage per course, every fill step ran before any validate or persist step, so
each course waited for the slowest fill of its run (measured: 732–734 s for every course of a run,
median = max). ``claimed_course_jobs`` prepares each course (strategy, skeleton) and starts its *finish*
— fill → validate → repair → persist — in the background (``CourseWorker.start``): each course is
persisted as soon as its own fill and checks are done, whatever the step order.

Why one reporting step, not a step per course (issue 23): a mapped step cost a course about ten Dagster
events of bookkeeping (its fan-out output and log line, step start, input loaded and received, a "done"
line, output, success) around the four that say something (two materializations, two checks): 14.4
events per course in a 10-course run through the daemon, now 6.1 (``bench/pipeline_bench.py``).
``finish_courses`` takes the courses in the order their finishes complete
(``CourseWorker.in_completion_order``, not plan order) and yields each course's events the moment it
is done, so the UI shows a course when it is ready, never behind a slower one; the stage timings and
spend of the old "done" line ride in the content materialization's metadata (``stage_ms``, tokens,
cost). Each course stays visible on its own partition: materializations and checks, or, for a failed course
(failed to begin, prepare or finish), an observation of its course_content partition stating the
failure with its job (``events.failed_course_events``) and one error line in the run's logs. Once
every course is reported the step raises ``Failure`` naming the failed courses and their reasons, so
the run fails as with a failed per-course step, and the run-failure sensor hands back (fenced by
attempt) only claims the run still holds. Progress and stage events stay on the job row and its
``job_events``.
"""


from dagster import (
    Config,
    In,
    OpExecutionContext,
    Out,
    op,
)
from pydantic import Field

from ignite_dagster.config import load_settings
from ignite_dagster.course_jobs.stages import FINISH, PREPARE, chain
from ignite_dagster.defs.courses.events import courses_failure, report_builder, report_courses
from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import ModelResource, QueueResource, StorageResource, course_worker
from ignite_dagster.defs.run_process import settle_run_process
from ignite_dagster.defs.run_tags import JOBS_TAG, course_run_tags, decode_claims, encode_claims


class ClaimedJobsConfig(Config):
    jobs: str = Field(default="", description="Claims handed over by the sensor: 'jobId:attempt,...'.")
    claim_now: int = Field(default=0, ge=0, le=50, description="Manual runs: claim up to this many pending jobs now.")


@op(out=Out(description="The run's prepared courses (CourseWork), each finishing in the background or ready "
                       "to finish; those that failed to begin or prepare carry their failure."),
    description=f"Load the claimed course jobs (or claim now), run {chain(PREPARE)} for each and start its "
                f"{chain(FINISH)} in the background; finish_courses reports them.")
def claimed_course_jobs(context: OpExecutionContext, config: ClaimedJobsConfig, queue: QueueResource,
                        storage: StorageResource, model: ModelResource) -> list:
    settle_run_process(context.instance)  # before the courses' threads start allocating (see run_process)
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
    worker = course_worker(queue, storage, model, on_persisted=report_builder(storage.store, source="queue"))
    works = [worker.begin_and_prepare(job) for job in jobs]  # a failure stays on work.error: reported later
    prepared = [w for w in works if w.error is None]
    if prepared:  # one line for the run, not one per course
        context.log.info("prepared: " + "; ".join(
            f"{w.job.course_id} {w.choice.kind} ({w.choice.reason}), {len(w.skeleton.items)} items, "
            f"{len(w.skeleton.groups)} groups{' (finishing in the background)' if w.pending is not None else ''}"
            for w in prepared))
    return works


@op(ins={"works": In(description="claimed_course_jobs' prepared courses")}, out={},
    description=f"Report every course as soon as its {chain(FINISH)} is done (in the background, or here for "
                "packs): its partition's materializations and checks, or its failure observed on its partition; "
                "then fail naming the failed courses, if any.")
def finish_courses(context: OpExecutionContext, queue: QueueResource, storage: StorageResource,
                   model: ModelResource, works: list):
    failures: list[str] = []
    yield from report_courses(course_worker(queue, storage, model), works, storage.store, source="queue",
                              log=context.log, failures=failures, settings=load_settings())
    if failures:
        raise courses_failure(failures, len(works), "failed")
