"""Submitting a course request: the one path shared by the HTTP API and the CLI.

Special requests (the free-text notes and any study text) are written to storage *before* the job row
exists, under the job's id; if that write fails nothing is inserted, so a worker never claims a job
whose notes are missing.
"""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

from ignite_dagster.course.request import STORED_APART, CourseRequest
from ignite_dagster.queue import CourseJob, EnqueueResult, JobQueue, NewCourseJob
from ignite_dagster.storage.base import ObjectStore, StoredObject
from ignite_dagster.storage.keys import special_requests_path


class IdempotencyConflict(Exception):
    """The Idempotency-Key names an existing job that asked for something else. Nothing was written."""

    code = "idempotency_conflict"

    def __init__(self, job: CourseJob, differing: list[str]):
        self.job, self.differing = job, differing
        super().__init__(
            f"Idempotency-Key was used for a different request (differs in: {', '.join(differing)})"
        )


class RequestRefused(Exception):
    """The factory, as configured, cannot honour this request (e.g. it needs the model path and no
    model is configured, or a pack was demanded outside its grade bands). Nothing was written: a
    request accepted with 202 and then dead-lettered for the same reason would be a broken promise."""

    def __init__(self, reason_code: str, message: str):
        self.code = reason_code
        super().__init__(message)


def check_servable(request: CourseRequest, *, model_configured: bool) -> None:
    """Run the strategy rules now, the way the worker will; raise RequestRefused when they refuse."""
    from ignite_dagster.generation.packs import default_index
    from ignite_dagster.generation.stages.select_strategy import select_strategy
    from ignite_dagster.generation.types import GenerationFailed

    try:
        select_strategy(request, default_index(), model_configured)
    except GenerationFailed as exc:
        raise RequestRefused(exc.reason_code, exc.message) from exc


def submit_course_request(
    queue: JobQueue,
    store: ObjectStore,
    request: CourseRequest,
    *,
    organization_id: UUID,
    idempotency_key: str | None = None,
    created_by: UUID | None = None,
    requested_by: str | None = None,
    priority: int = 100,
    max_retries: int = 3,
    model_configured: bool | None = None,
    not_before: datetime | None = None,
    images_configured: bool | None = None,
) -> EnqueueResult:
    """Store the request's notes/study text, then its job row (every other field is a column).

    A replayed Idempotency-Key returns the existing job when it asked for the same request (same
    fingerprint, notes and study text included) and raises :class:`IdempotencyConflict` otherwise;
    either way nothing new is written. With ``model_configured`` given, a request the strategy rules
    would refuse (no model for a request that needs one, a pack demanded outside its bands) raises
    :class:`RequestRefused` before anything is written. With ``images_configured`` False, a request
    asking for images (``wants_images``, ``item_images``) is refused the same way.
    """
    if model_configured is not None:
        check_servable(request, model_configured=model_configured)
    if images_configured is False and (request.wants_images or request.item_images):
        raise RequestRefused(
            "model_not_configured", "images were requested (wants_images / item_images) but no image model is "
            "configured: set IGNITE_IMAGE_MODEL and IGNITE_IMAGE_API_KEY (or OPENAI_API_KEY)")
    special = request.stored_apart()
    job = NewCourseJob.of(request, priority=priority, max_retries=max_retries)

    def save_special_requests(job_id: UUID) -> None:
        body = json.dumps({"jobId": str(job_id), **special}, ensure_ascii=False, indent=2).encode()
        store.put(special_requests_path(job_id), body, content_type="application/json")

    result = queue.enqueue_course(
        job,
        organization_id=organization_id,
        idempotency_key=idempotency_key,
        created_by=created_by,
        requested_by=requested_by,
        before_insert=save_special_requests if special else None,
        not_before=not_before,
    )
    if result.replayed:
        assert isinstance(result.job, CourseJob)
        differing = _differing(store, result.job, request, job.request_fingerprint)
        if differing:
            raise IdempotencyConflict(result.job, differing)
    return result


def _differing(store: ObjectStore, existing: CourseJob, request: CourseRequest, fingerprint: str | None) -> list[str]:
    """The request fields in which ``existing`` differs from ``request`` (empty: the same request)."""
    if existing.request_fingerprint is not None and existing.request_fingerprint == fingerprint:
        return []
    differing = [name for name in CourseRequest.column_names() if getattr(existing, name) != getattr(request, name)]
    if differing and existing.request_fingerprint is not None:
        return differing
    # The columns agree (or the row predates fingerprints): compare the texts stored apart.
    try:
        stored = load_special_requests(store, existing.id) if existing.has_special_requests else {}
    except Exception:  # noqa: BLE001 - unreadable: cannot prove they are equal
        stored = None
    if stored is None:
        return differing or list(STORED_APART)
    wanted = request.stored_apart()
    differing += [name for name in STORED_APART if stored.get(name) != wanted.get(name)]
    if not differing and existing.request_fingerprint is not None:
        # Fingerprints differ but no field does: the canonical form changed since the row was written.
        # The stored request is the same request; say so rather than refuse the replay.
        return []
    return differing


def load_special_requests(store: ObjectStore, job_id: UUID | str) -> dict[str, str]:
    """The notes/study text saved at enqueue; a job flagged with special requests whose file is gone is
    an error the caller reports (it never silently generates without them)."""
    obj: StoredObject = store.get(special_requests_path(job_id))
    data = json.loads(obj.data)
    return {k: v for k, v in data.items() if k in STORED_APART}
