"""Media ops: claimed jobs → one branch per course → generate images → store, attach, report.

Why one branch per *course* (not per job): the course_media asset is partitioned by course, and a reader
wants one materialization per course and run (count, bytes, provider, model, cost, targets) and one
``media_complete`` evaluation after the course's images are attached, not one half-finished check per
image. Within a branch each job still succeeds or fails on its own: a failed job is marked in its row
(retryable or not) and the others go on; the branch's last op fails *after* reporting what did attach,
so the UI shows the failure and the partition still records the images that made it.

Generation runs concurrently inside the op (threads, at most IGNITE_LLM_CONCURRENCY) and the op holds
the ``model_provider`` pool, like the course fill, so image and text calls share one provider budget.
"""

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    Config,
    DynamicOut,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    op,
)
from pydantic import Field

from ignite_dagster.config import load_settings
from ignite_dagster.defs.checks import MEDIA_CHECK, evaluate_media
from ignite_dagster.defs.courses.keys import COURSE_MEDIA, MODEL_POOL
from ignite_dagster.defs.partitions import courses_partitions
from ignite_dagster.defs.resources import QueueResource, StorageResource, media_worker
from ignite_dagster.defs.run_tags import JOBS_TAG, decode_claims, encode_claims


@dataclass
class MediaBatch:
    """One course's jobs in this run, handed from op to op in memory."""

    course_id: str
    works: list[Any] = field(default_factory=list)  # MediaWork still going
    failures: list[str] = field(default_factory=list)
    done: list[Any] = field(default_factory=list)  # MediaWork completed


class ClaimedMediaConfig(Config):
    jobs: str = Field(default="", description="Claims handed over by the sensor: 'jobId:attempt,...'.")
    claim_now: int = Field(default=0, ge=0, le=100, description="Manual runs: claim up to this many pending media jobs now.")


def _describe(exc: Exception) -> str:
    reason = getattr(exc, "reason_code", "lost_claim")
    status = getattr(exc, "new_status", None)
    return f"{reason} ({status or 'not marked: claim lost'}): {exc}"


@op(out=DynamicOut(), description="Load the claimed media jobs (or claim now) and fan out one branch per course.")
def claimed_media_jobs(context: OpExecutionContext, config: ClaimedMediaConfig, queue: QueueResource,
                       storage: StorageResource):
    from ignite_dagster.media.worker import MediaJobFailed

    job_queue = queue.queue
    if config.claim_now:
        jobs = []
        while len(jobs) < config.claim_now:
            got = job_queue.claim_media_jobs(f"dagster:{context.run_id}", limit=1)
            if not got:
                break
            jobs.extend(got)
        if jobs:
            context.instance.add_dynamic_partitions(courses_partitions.name, sorted({j.course_id for j in jobs}))
            context.instance.add_run_tags(context.run_id, {JOBS_TAG: encode_claims([(j.id, j.attempt) for j in jobs])})
    else:
        jobs = []
        for job_id, attempt in decode_claims(config.jobs):
            job = job_queue.get(job_id, "ai_media_jobs")
            if job is None or job.status != "processing" or job.attempt != attempt:
                context.log.warning(f"media job {job_id} attempt {attempt} is no longer held (now "
                                    f"{getattr(job, 'status', 'missing')}, attempt {getattr(job, 'attempt', '-')}); skipped")
                continue
            jobs.append(job)
    context.log.info(f"{len(jobs)} media job(s) for {len({j.course_id for j in jobs})} course(s)")
    worker = media_worker(queue, storage)
    batches: dict[str, MediaBatch] = defaultdict(lambda: MediaBatch(course_id=""))
    for job in jobs:
        batch = batches[job.course_id]
        batch.course_id = job.course_id
        try:
            batch.works.append(worker.begin(job))
        except MediaJobFailed as exc:
            batch.failures.append(_describe(exc))
            context.log.error(str(exc))
    for course_id, batch in sorted(batches.items()):
        yield DynamicOutput(batch, mapping_key=course_id.replace("-", "_"))


@op(description="Generate the course's images (reusing any an earlier attempt stored); concurrent, one request "
    "per job, no retry inside the run: retryable provider errors go back to the queue's backoff.", pool=MODEL_POOL)
def generate_images(context: OpExecutionContext, queue: QueueResource, storage: StorageResource,
                    batch: MediaBatch) -> MediaBatch:
    from ignite_dagster.media.worker import MediaJobFailed
    from ignite_dagster.queue.errors import LostClaim

    worker = media_worker(queue, storage)

    def one(work):
        try:
            return worker.generate(work), None
        except (MediaJobFailed, LostClaim) as exc:
            return None, exc

    workers = max(1, min(len(batch.works), load_settings().llm_concurrency))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ignite-image") as pool:
            results = list(pool.map(one, batch.works))
    finally:
        worker.close()
    kept = []
    for work, exc in results:
        if exc is not None:
            batch.failures.append(_describe(exc))
            context.log.error(f"{batch.course_id}: {exc}")
        else:
            kept.append(work)
            source = "reused stored image" if work.reused else f"{work.image.model} {work.image.latency_ms} ms"
            context.log.info(f"{work.label}: {len(work.data)} bytes {work.content_type} ({source})")
    batch.works = kept
    return batch


@op(description="Upload to media-library, attach into course.json (compare-and-swap), complete the jobs; report "
    "the course_media materialization and the media_complete check for the course partition.")
def attach_images(context: OpExecutionContext, queue: QueueResource, storage: StorageResource,
                  batch: MediaBatch) -> None:
    from ignite_dagster.media.worker import MediaJobFailed
    from ignite_dagster.queue.errors import LostClaim

    worker = media_worker(queue, storage)
    for work in batch.works:
        try:
            batch.done.append(worker.attach(worker.store_image(work)))
        except (MediaJobFailed, LostClaim) as exc:
            batch.failures.append(_describe(exc))
            context.log.error(f"{batch.course_id}: {exc}")
    if batch.done:
        context.log_event(AssetMaterialization(
            asset_key=COURSE_MEDIA, partition=batch.course_id, metadata=materialization_metadata(batch.done)))
        check = evaluate_media(queue.queue, storage.store, batch.course_id)
        context.log_event(AssetCheckEvaluation(
            asset_key=COURSE_MEDIA, check_name=MEDIA_CHECK, passed=check.passed, partition=batch.course_id,
            metadata=check.metadata, severity=check.severity))
    if batch.failures:
        raise Failure(
            description=f"{batch.course_id}: {len(batch.failures)} media job(s) failed, {len(batch.done)} attached",
            metadata={"failures": MetadataValue.text("\n".join(batch.failures))},
        )


def materialization_metadata(done: list[Any]) -> dict[str, Any]:
    """What a reader of the course_media partition wants to know about this run's images."""
    costs = [w.cost_usd for w in done]
    cost = None if any(c is None for c in costs) else sum(costs, Decimal(0))
    return {
        "count": len(done),
        "bytes": sum(len(w.data or b"") for w in done),
        "provider": ", ".join(sorted({w.result.get("provider") or "" for w in done})),
        "model": ", ".join(sorted({w.result.get("model") or "" for w in done})),
        "cost_usd": float(cost) if cost is not None else "unknown (no image price configured)",
        "reused": sum(1 for w in done if w.reused),
        "cas_conflicts": sum(w.conflicts for w in done),
        "targets": MetadataValue.json([w.job.target_ref for w in done]),
        "by_target_type": MetadataValue.json({
            kind: sum(1 for w in done if w.job.target_ref.get("type") == kind)
            for kind in ("study_text", "item_stimulus", "item_option")}),
        "urls": MetadataValue.json([w.url for w in done]),
        "job_ids": ", ".join(f"{w.job.id}#{w.job.attempt}" for w in done),
    }
