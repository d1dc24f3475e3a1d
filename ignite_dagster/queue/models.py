"""Typed rows and inputs of the job queues (shared/design/queue.md)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ignite_dagster.course.request import COURSE_ID_REGEX, CourseRequest, FullMatch

JobTable = Literal["ai_course_jobs", "ai_media_jobs"]
JobStatus = Literal["pending", "processing", "done", "failed", "stale", "dead_letter"]
JOB_TABLES: tuple[str, ...] = ("ai_course_jobs", "ai_media_jobs")
ClaimRef = tuple[UUID, int]  # a claim as a run's tags carry it: (job id, attempt)


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: UUID
    organization_id: UUID
    course_id: str
    status: JobStatus
    priority: int
    attempt: int
    retry_count: int
    max_retries: int
    next_attempt_at: datetime
    idempotency_key: str | None = None
    created_by: UUID | None = None
    requested_by: str | None = None
    worker_id: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    last_heartbeat: datetime | None = None
    last_event_at: datetime | None = None
    progress_stage: str | None = None
    progress_percent: int | None = None
    progress_message: str | None = None
    result_path: str | None = None
    error: str | None = None
    reason_code: str | None = None
    cost_usd: Decimal | None = None
    dagster_run_id: str | None = None  # the run working (or that last worked) the current attempt


class _CourseJobRow(_Row):
    """The queue's own columns of ``ai_course_jobs``; the request's columns are added below."""

    has_special_requests: bool
    request_fingerprint: str | None
    provider: str | None = None
    model: str | None = None
    tokens: int | None = None
    cost_known: bool | None = None  # false once a billed call had no price (cost_usd is then NULL); None: nothing spent
    latency_ms: int | None = None
    processing_duration_ms: int | None = None
    generation_duration_ms: int | None = None
    summary: dict[str, Any] | None = None

    table: JobTable = "ai_course_jobs"


# One row of ``ai_course_jobs``. Its request columns are CourseRequest's fields (all but the texts stored
# apart), each *required*: a request field without its column fails every read of a job, loudly, instead of
# being dropped (rows are read with SELECT *).
CourseJob = create_model(
    "CourseJob",
    __base__=_CourseJobRow,
    __module__=__name__,
    __doc__="One row of ai_course_jobs: the course request's columns plus the queue's.",
    **{
        name: (field.annotation | None, ...)  # type: ignore[operator]
        for name, field in CourseRequest.model_fields.items()
        if name in CourseRequest.column_names() and name != "course_id"  # course_id is on every row already
    },
)


class MediaJob(_Row):
    course_job_id: UUID | None = None
    media_type: Literal["image", "audio", "video"]
    prompt: str
    style: str | None = None
    provider: str | None = None
    model: str | None = None
    target_ref: dict[str, Any]
    result_url: str | None = None
    metadata: dict[str, Any] | None = None

    table: JobTable = "ai_media_jobs"


class NewCourseJob(CourseRequest):
    """A course request as the queue stores it: the request's columns plus the queue's options.

    It *is* a CourseRequest (same fields, same validation), so bad input is refused with the request's
    own messages before it reaches SQL. The free texts are not columns: they are saved to storage by
    ``course_jobs.submit.submit_course_request``, which is how requests with notes must be enqueued.
    """

    has_special_requests: bool = False
    request_fingerprint: Annotated[str, FullMatch(r"[0-9a-f]{64}")] | None = None
    priority: int = 100
    max_retries: int = Field(default=3, ge=0, le=20)

    @model_validator(mode="after")
    def _texts_are_stored_apart(self) -> NewCourseJob:
        if self.notes or self.study_text:
            raise ValueError("notes and study_text are not job columns: enqueue with submit_course_request")
        return self

    @classmethod
    def of(cls, request: CourseRequest, *, priority: int = 100, max_retries: int = 3) -> NewCourseJob:
        return cls(
            **request.columns(),
            has_special_requests=bool(request.stored_apart()),
            request_fingerprint=request.fingerprint(),
            priority=priority,
            max_retries=max_retries,
        )

    def row(self) -> dict[str, Any]:
        """The column values to insert: the request's columns, then the queue's."""
        return {**CourseRequest.columns(self), **{name: getattr(self, name) for name in QUEUE_COLUMNS}}


QUEUE_COLUMNS = ("has_special_requests", "request_fingerprint", "priority", "max_retries")


class TargetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["study_text", "item_stimulus", "item_option"]
    itemId: int | None = None
    sectionId: str | None = None
    optionIndex: int | None = None
    markerIndex: int | None = None


class NewMediaJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course_id: Annotated[str, FullMatch(COURSE_ID_REGEX)]
    course_job_id: UUID | None = None
    media_type: Literal["image", "audio", "video"] = "image"
    prompt: str = Field(min_length=1, max_length=4000)
    style: str | None = None
    provider: str | None = None
    target_ref: TargetRef
    priority: int = 100
    max_retries: int = Field(default=3, ge=0, le=20)


class EnqueueResult(BaseModel):
    job: CourseJob | MediaJob
    replayed: bool


class JobEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    job_id: UUID
    job_table: JobTable
    attempt: int | None
    seq: int
    step: str
    status: Literal["info", "success", "error"]
    progress: int | None
    message: str | None
    meta: dict[str, Any] | None
    created_at: datetime


class SweepRow(BaseModel):
    job_id: UUID
    job_type: JobTable
    stale_duration: Any | None = None
