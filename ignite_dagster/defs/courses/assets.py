"""Course assets, one partition per course id (``defs/partitions.py``), materializable from the UI.

``generate_course_assets`` (course_content + course_metadata) and ``course_media`` have compute
functions, so an operator can select partitions and press Materialize, or launch a backfill. Both go
through the queue (``course_jobs/materialize.py``): every course gets a job attempt, claimed and
heartbeated, so job status, retries, stale detection and dead letter behave as for sensor work, and a
course another worker is generating is waited for, never generated twice.

The queue sensors' runs (``generate_courses``, ``generate_media``) report materializations of the same
assets from their ops (through the same ``report_courses`` for courses), so a partition's history shows
every generation whichever path ran it (metadata ``source``: queue, materialization or reconciler).

A backfill batches partitions into runs the way the sensor batches claims
(``BackfillPolicy.multi_run`` with IGNITE_COURSES_PER_RUN partitions per run): one run start serves many
courses. The assets report per-partition materializations (a run over many courses must not mark a
failed course materialized), so their outputs are skippable and the compute yields events only.
"""


import time
import warnings
from typing import Any, Optional

from dagster import (
    AssetCheckEvaluation,
    AssetExecutionContext,
    AssetMaterialization,
    AssetSpec,
    BackfillPolicy,
    Config,
    Definitions,
    Failure,
    MetadataValue,
    asset,
    definitions,
    multi_asset,
)
from pydantic import create_model

from ignite_dagster.config import load_settings
from ignite_dagster.course_jobs.stages import stage_lines
from ignite_dagster.defs.courses.events import courses_failure, report_builder, report_courses
from ignite_dagster.defs.courses.keys import COURSE_CONTENT, COURSE_MEDIA, COURSE_METADATA
from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import (
    ModelResource,
    QueueResource,
    StorageResource,
    course_worker,
    media_worker,
)
from ignite_dagster.defs.run_process import settle_run_process
from ignite_dagster.defs.run_tags import JOBS_TAG, course_run_tags, encode_claims
from ignite_dagster.storage.keys import course_media_prefix, course_path

__all__ = ["COURSE_CONTENT", "COURSE_MEDIA", "COURSE_METADATA", "build_generate_course_assets", "course_assets",
           "course_media"]

# backfill_policy on @asset is a beta parameter in Dagster 1.13 (stable on @multi_asset); we rely on it knowingly.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy` of function `asset`")

MATERIALIZE_OP = "generate_course_assets"
# How long a materialization waits for a course another worker holds before giving up on it.
WAIT_POLL_SECONDS = 2.0


def _config_type(prop: dict[str, Any]) -> Any:
    """The run-config type of one request field, from its JSON schema (Dagster config takes scalars and
    lists; the request model validates the value itself)."""
    kinds = [prop.get("type")] + [p.get("type") for p in prop.get("anyOf", []) if isinstance(p, dict)]
    # typing.Optional, not ``X | None``: Dagster's config type resolution does not read PEP 604 unions
    if "array" in kinds:
        return Optional[list[str]]  # noqa: UP045
    if "boolean" in kinds:
        return Optional[bool]  # noqa: UP045
    if "integer" in kinds and "string" not in kinds:
        return Optional[int]  # noqa: UP045
    return Optional[str]  # noqa: UP045


def _override_config() -> type[Config]:
    """Run config of a course materialization: every request field but the course id, all optional.

    Derived from ``CourseRequest`` (the one definition of a request), so a field added there can be
    overridden here without touching this module; unset fields keep the course's last stored request."""
    from ignite_dagster.course.request import CourseRequest

    props = CourseRequest.model_json_schema()["properties"]
    fields = {
        name: (_config_type(props.get(name, {})), None)
        for name in CourseRequest.model_fields
        if name != "course_id"
    }
    return create_model(  # type: ignore[call-overload]
        "CourseMaterializeConfig",
        __base__=Config,
        __doc__="Overrides of the course's last stored request; unset fields keep it.",
        **fields,
    )


CourseMaterializeConfig = _override_config()


def _wait_until_free(queue: QueueResource, job) -> str:
    """Wait while another worker holds the course; returns the job's final status."""
    deadline = time.monotonic() + load_settings().stale_timeout_seconds + 60
    status = job.status
    while time.monotonic() < deadline:
        current = queue.queue.get(job.id)
        status = current.status if current is not None else "missing"
        if status != "processing":
            return status
        time.sleep(WAIT_POLL_SECONDS)
    return status


def _generate(context: AssetExecutionContext, queue: QueueResource, storage: StorageResource, model: ModelResource,
              config: Config, failures: list[str]):
    """Take every partition's course through the queue and the staged worker, yielding each finished
    course's events as it finishes (yielded, not logged: events logged before a step fails are lost);
    appends a line per course that was not generated to ``failures``."""
    from ignite_dagster.course_jobs.materialize import take_course
    settle_run_process(context.instance)  # as generate_courses' first step does (see run_process)
    overrides = {k: v for k, v in config.model_dump().items() if v is not None}
    settings = load_settings()
    worker_id = f"dagster:{context.run.run_id}"
    taken = []
    for course_id in context.partition_keys:
        try:
            t = take_course(queue.queue, storage.store, course_id, worker_id=worker_id, overrides=overrides,
                            model_configured=settings.model_configured)
        except Exception as exc:  # noqa: BLE001 - a request that cannot be rebuilt or is refused: say which
            failures.append(f"{course_id}: {type(exc).__name__}: {exc}")
            context.log.error(failures[-1])
            continue
        if t.outcome == "busy":
            context.log.warning(t.message + "; waiting for it to finish")
            status = _wait_until_free(queue, t.job)
            if status == "done":
                context.log.info(f"{course_id}: job {t.job.id} finished (done) on the other path; its run "
                                 "reported the materialization")
            else:
                failures.append(f"{course_id}: job {t.job.id} held by another worker ended {status}")
                context.log.error(failures[-1])
            continue
        if not t.claimed:
            failures.append(t.message)
            context.log.error(t.message)
            continue
        context.log.info(t.message)
        taken.append(t.job)
    if not taken:
        return

    context.instance.add_run_tags(context.run.run_id, {JOBS_TAG: encode_claims([(j.id, j.attempt) for j in taken]),
                                                   **course_run_tags(taken)})
    for job in taken:
        queue.queue.set_run_id(job.id, "ai_course_jobs", job.attempt, context.run.run_id)

    # Prepare every course first (strategy, skeleton) and start its fill → persist in the background, then
    # report the courses in the order they finish, exactly as generate_courses' finish_courses step does:
    # each is persisted as soon as its own fill is done, and its materialization is yielded then, not after
    # the slower courses before it; a failed one is observed failed on its partition.
    worker = course_worker(queue, storage, model,
                           on_persisted=report_builder(storage.store, source="materialization", settings=settings))
    works = [worker.begin_and_prepare(job) for job in taken]
    yield from report_courses(worker, works, storage.store, source="materialization", log=context.log,
                              failures=failures, settings=settings)


def build_generate_course_assets(courses_per_run: int):
    """The course_content + course_metadata multi-asset; a backfill runs ``courses_per_run`` partitions per run."""
    @multi_asset(
        name=MATERIALIZE_OP,
        specs=[
            AssetSpec(
                COURSE_CONTENT, skippable=True, group_name="courses", kinds={"json"},
                description=f"{course_path('{courseId}')}: the validated Course v2 document.",
                metadata={"storage_path": course_path("{courseId}")},
            ),
            AssetSpec(
                COURSE_METADATA, skippable=True, group_name="courses", kinds={"postgres"}, deps=[COURSE_CONTENT],
                description="course_metadata row and the job's catalog_updates row in Postgres.",
            ),
        ],
        partitions_def=courses_partitions,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=max(1, courses_per_run)),
        description="(Re)generate the selected courses through the queue: each course's queued job is claimed, "
        "or a new job is enqueued from its last stored request (run config overrides any request field) and "
        "claimed; a course another worker holds is waited for. Stages as in generate_courses (progress when each "
        f"starts):\n\n{stage_lines()}",
    )
    def generate_course_assets(context: AssetExecutionContext, config: CourseMaterializeConfig,  # type: ignore[valid-type]
                               queue: QueueResource, storage: StorageResource, model: ModelResource):
        failures: list[str] = []
        yield from _generate(context, queue, storage, model, config, failures)
        if failures:
            raise courses_failure(failures, len(context.partition_keys), "not generated")
        yield from ()

    return generate_course_assets


@asset(
    key=COURSE_MEDIA,
    deps=[COURSE_CONTENT],
    partitions_def=courses_partitions,
    group_name="courses",
    kinds={"image"},
    output_required=False,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=10),
    description=f"Generated images attached into course.json ({course_media_prefix('{courseId}')}/...). "
    "Materializing works the course's queued media jobs now (they follow every content generation that "
    "wants images, and `ignite`'s media requests); the media_complete check reports after.",
)
def course_media(context: AssetExecutionContext, queue: QueueResource, storage: StorageResource):
    from ignite_dagster.defs.checks import MEDIA_CHECK, evaluate_media
    from ignite_dagster.defs.media.ops import materialization_metadata
    from ignite_dagster.media.worker import work_claimed

    failures: list[str] = []
    for course_id in context.partition_keys:
        jobs = queue.queue.claim_course_media_jobs(course_id, f"dagster:{context.run.run_id}")
        if not jobs:
            context.log.info(f"{course_id}: no queued media jobs (images follow content generation when "
                             "requested); nothing to attach")
        else:
            for job in jobs:
                queue.queue.set_run_id(job.id, "ai_media_jobs", job.attempt, context.run.run_id)
            worker = media_worker(queue, storage)
            try:
                done, failed = work_claimed(worker, jobs)
            finally:
                worker.close()
            failures += [f"{course_id}: {exc}" for exc in failed]
            if done:
                yield AssetMaterialization(asset_key=COURSE_MEDIA, partition=course_id,
                                           metadata={**materialization_metadata(done), "source": "materialization"})
        check = evaluate_media(queue.queue, storage.store, course_id)
        yield AssetCheckEvaluation(
            asset_key=COURSE_MEDIA, check_name=MEDIA_CHECK, passed=check.passed, partition=course_id,
            metadata=check.metadata, severity=check.severity)
    if failures:
        raise Failure(description=f"{len(failures)} media job(s) failed",
                      metadata={"failures": MetadataValue.text("\n".join(failures))})


@definitions
def course_assets() -> Definitions:
    """The course assets, built when the code location loads: the backfill batch size is a setting
    (IGNITE_COURSES_PER_RUN), and importing this module reads no environment."""
    return Definitions(assets=[build_generate_course_assets(load_settings().courses_per_run), course_media])
