"""Submitting a course request: the one path shared by the HTTP API and the CLI.

Special requests (the free-text notes and any study text) are written to storage *before* the job row
exists, under the job's id; if that write fails nothing is inserted, so a worker never claims a job
whose notes are missing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from uuid import UUID

from ignite_dagster.queue import EnqueueResult, JobQueue, NewCourseJob
from ignite_dagster.storage.base import ObjectStore, StoredObject

if TYPE_CHECKING:
    from ignite_dagster.course.request import CourseRequest


def debug_prefix(job_id: UUID | str) -> str:
    return f"courses/debug/jobs/{job_id}"


def special_requests_path(job_id: UUID | str) -> str:
    return f"{debug_prefix(job_id)}/special_requests.json"


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
) -> EnqueueResult:
    special = {k: v for k, v in (("notes", request.notes), ("study_text", request.study_text)) if v}
    job = NewCourseJob(
        course_id=request.course_id,
        subject=request.subject,
        grade_band=request.grade_band,
        grade=request.grade,
        items_per_group=request.items_per_group,
        levels_count=request.levels_count,
        study_texts_count=request.study_texts_count,
        mode=request.mode,
        strategy=request.strategy,
        has_special_requests=bool(special),
        wants_images=request.wants_images,
        priority=priority,
        max_retries=max_retries,
    )

    def save_special_requests(job_id: UUID) -> None:
        body = json.dumps({"jobId": str(job_id), **special}, ensure_ascii=False, indent=2).encode()
        store.put(special_requests_path(job_id), body, content_type="application/json")

    return queue.enqueue_course(
        job,
        organization_id=organization_id,
        idempotency_key=idempotency_key,
        created_by=created_by,
        requested_by=requested_by,
        before_insert=save_special_requests if special else None,
    )


def load_special_requests(store: ObjectStore, job_id: UUID | str) -> dict[str, str]:
    """The notes/study text saved at enqueue; a job flagged with special requests whose file is gone is
    an error the caller reports (it never silently generates without them)."""
    obj: StoredObject = store.get(special_requests_path(job_id))
    data = json.loads(obj.data)
    return {k: v for k, v in data.items() if k in ("notes", "study_text")}
