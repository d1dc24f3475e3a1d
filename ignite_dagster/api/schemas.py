"""The HTTP contract: request and response models of the routes.

The enqueue payload *is* the domain's :class:`CourseRequest`, made exact: strict JSON types (no ``"5"``
for 5) and none of the human spellings the Python API forgives. Its published schema therefore accepts
precisely what the service accepts, which is what lets clients (and the schema fuzzer) trust it. Every
pattern is a full match (:class:`FullMatch`): a trailing newline is refused, never stripped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ignite_dagster.api.errors import ErrorResponse, IssueOut
from ignite_dagster.catalog.publishing import CHANGE_SUMMARY_MAX
from ignite_dagster.course.request import CourseId, CourseRequest, FullMatch, Visibility
from ignite_dagster.media.targets import SPEC_REGEX
from ignite_dagster.queue import CourseJob, JobEvent, MediaJob

JobTableName = Literal["ai_course_jobs", "ai_media_jobs"]
JobStatusName = Literal["pending", "processing", "done", "failed", "stale", "dead_letter"]

# Free text that reaches Postgres must hold no NUL (Postgres text cannot store it); a prompt must also
# hold a visible character. Blanks are spelled out: Python's and ECMA-262's ``\s`` differ.
_BLANK = r"\t\n\v\f\r\x1c-\x1f \x85\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NoNul = Annotated[str, FullMatch(r"[^\x00]*", "must not contain NUL characters")]
NotBlank = Annotated[str, FullMatch(rf"[^\x00]*[^\x00{_BLANK}][^\x00]*", "must hold a visible character and no NUL")]


def camel(name: str) -> str:
    """``items_per_group`` → ``itemsPerGroup``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class EnqueuePayload(CourseRequest):
    """The ``ai_course_generate`` payload: the course request, exact (strict JSON types, canonical
    spellings). Every field comes from CourseRequest; this class only changes how strictly they are read."""

    model_config = ConfigDict(strict=True, title="EnqueuePayload")
    lenient: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _whole_floats(cls, data: Any) -> Any:
        """``3.0`` is the integer 3 in JSON (and in JSON Schema); strict mode would refuse it, while
        ``"3"`` must stay refused. No field of the request is a float, so any whole float is an integer."""
        if isinstance(data, dict):
            data = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in data.items()}
        return data


class EnqueueBody(BaseModel):
    """The original edge function's body."""

    model_config = ConfigDict(extra="forbid")

    jobType: Literal["ai_course_generate"] = Field(description="Only ai_course_generate is served here.")
    payload: EnqueuePayload


class EnqueueResponse(BaseModel):
    ok: Literal[True] = True
    jobId: UUID
    status: str = Field(description="'queued' while the job is pending; otherwise the job's status (replays).")
    jobStatus: JobStatusName
    replayed: bool = Field(description="True when the Idempotency-Key matched an existing job.")
    requestId: str


class JobProgress(BaseModel):
    stage: str | None = None
    percent: int | None = None
    message: str | None = None


class JobOut(BaseModel):
    id: UUID
    jobTable: JobTableName
    organizationId: UUID
    courseId: str
    status: JobStatusName
    progress: JobProgress
    priority: int
    attempt: int
    retryCount: int
    maxRetries: int
    nextAttemptAt: datetime
    createdAt: datetime
    updatedAt: datetime
    startedAt: datetime | None = None
    completedAt: datetime | None = None
    lastHeartbeat: datetime | None = None
    error: str | None = None
    reasonCode: str | None = None
    resultPath: str | None = None
    idempotencyKey: str | None = None
    createdBy: UUID | None = None
    requestedBy: str | None = None
    provider: str | None = None
    model: str | None = None
    costUsd: float | None = None
    # false when a billed model call had no price (costUsd is then null, never 0); null until the job spent
    # anything on a model (course jobs) or when the image price is missing (media jobs: costUsd null)
    costKnown: bool | None = None
    # course jobs: the request's columns, camelCased (a test keeps them in step with CourseRequest)
    subject: str | None = None
    gradeBand: str | None = None
    grade: str | None = None
    itemsPerGroup: int | None = None
    levelsCount: int | None = None
    studyTextsCount: int | None = None
    groupsCount: int | None = None
    mode: str | None = None
    strategy: str | None = None
    wantsImages: bool | None = None
    locale: str | None = None
    itemImages: list[str] | None = None
    tags: list[str] | None = None
    visibility: str | None = None
    hasSpecialRequests: bool | None = None
    tokens: int | None = None
    summary: dict[str, Any] | None = None
    # media jobs
    mediaType: str | None = None
    prompt: str | None = None
    style: str | None = None
    targetRef: dict[str, Any] | None = None
    resultUrl: str | None = None
    # the Dagster run working (or that last worked) the current attempt, and its page in the Dagster UI
    # (null unless IGNITE_DAGSTER_UI_URL is configured: the service does not guess where the UI lives)
    dagsterRunId: str | None = None
    dagsterRunUrl: str | None = None

    @classmethod
    def of(cls, job: CourseJob | MediaJob, dagster_ui_url: str | None = None) -> JobOut:
        run_id = job.dagster_run_id
        common: dict[str, Any] = dict(
            dagsterRunId=run_id,
            dagsterRunUrl=f"{dagster_ui_url.rstrip('/')}/runs/{run_id}" if run_id and dagster_ui_url else None,
            id=job.id,
            jobTable=job.table,
            organizationId=job.organization_id,
            courseId=job.course_id,
            status=job.status,
            progress=JobProgress(stage=job.progress_stage, percent=job.progress_percent, message=job.progress_message),
            priority=job.priority,
            attempt=job.attempt,
            retryCount=job.retry_count,
            maxRetries=job.max_retries,
            nextAttemptAt=job.next_attempt_at,
            createdAt=job.created_at,
            updatedAt=job.updated_at,
            startedAt=job.started_at,
            completedAt=job.completed_at,
            lastHeartbeat=job.last_heartbeat,
            error=job.error,
            reasonCode=job.reason_code,
            resultPath=job.result_path,
            idempotencyKey=job.idempotency_key,
            createdBy=job.created_by,
            requestedBy=job.requested_by,
            provider=job.provider,
            model=job.model,
            costUsd=float(job.cost_usd) if job.cost_usd is not None else None,
        )
        if isinstance(job, CourseJob):
            common.update({camel(name): getattr(job, name) for name in CourseRequest.column_names()})
            common.update(
                hasSpecialRequests=job.has_special_requests,
                costKnown=job.cost_known,
                tokens=job.tokens,
                summary=job.summary,
            )
        else:
            common.update(
                mediaType=job.media_type,
                prompt=job.prompt,
                style=job.style,
                targetRef=job.target_ref,
                resultUrl=job.result_url,
            )
        return cls(**common)


class EventOut(BaseModel):
    seq: int
    attempt: int | None = None
    step: str
    status: Literal["info", "success", "error"]
    progress: int | None = None
    message: str | None = None
    meta: dict[str, Any] | None = None
    createdAt: datetime

    @classmethod
    def of(cls, event: JobEvent) -> EventOut:
        return cls(
            seq=event.seq,
            attempt=event.attempt,
            step=event.step,
            status=event.status,
            progress=event.progress,
            message=event.message,
            meta=event.meta,
            createdAt=event.created_at,
        )


class JobStatusResponse(BaseModel):
    ok: Literal[True] = True
    jobId: UUID
    status: JobStatusName
    job: JobOut
    events: list[EventOut]
    requestId: str


class JobListResponse(BaseModel):
    ok: Literal[True] = True
    jobs: list[JobOut]
    count: int
    requestId: str


class RequeueBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobId: UUID
    jobTable: JobTableName = "ai_course_jobs"


class RequeueResponse(BaseModel):
    ok: Literal[True] = True
    jobId: UUID
    jobTable: JobTableName
    status: Literal["pending"] = "pending"
    requestId: str


class PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    courseId: CourseId
    changeSummary: NoNul | None = Field(default=None, max_length=CHANGE_SUMMARY_MAX)


class PublishResponse(BaseModel):
    ok: Literal[True] = True
    courseId: str
    version: int
    etag: int
    storagePath: str
    contentSha256: str
    catalogVersion: int
    warnings: list[IssueOut]
    requestId: str


class MediaBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: NotBlank = Field(min_length=1, max_length=4000)
    style: str | None = Field(default=None, max_length=200)
    size: Annotated[str, FullMatch(r"[0-9]{2,4}x[0-9]{2,4}")] | None = Field(default=None, description="e.g. 1024x1024")


class MediaResponse(BaseModel):
    ok: Literal[True] = True
    url: str
    path: str
    details: dict[str, Any] = Field(default_factory=dict, description="Anything else the generator reported.")
    requestId: str


ImageTargetSpec = Annotated[str, FullMatch(
    SPEC_REGEX, "a target is 'study_texts', 'stimulus:<itemId>', 'stimulus:all', 'options:<itemId>' or 'options:all'")]


class CourseMediaBody(BaseModel):
    """Images for an existing course: which targets (the request's vocabulary, plus study_texts)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    courseId: CourseId
    targets: list[ImageTargetSpec] = Field(
        min_length=1, max_length=200,
        description="study_texts (markers still holding a description), stimulus:<itemId>|all, options:<itemId>|all.")
    style: NoNul | None = Field(default=None, max_length=200, description="Free style text appended to every prompt.")


class CourseMediaResponse(BaseModel):
    ok: Literal[True] = True
    courseId: str
    jobIds: list[UUID] = Field(description="One new media job per target that had neither an image nor a live job.")
    targets: list[dict[str, Any]] = Field(description="The targets of the new jobs, in jobIds' order.")
    alreadyAttached: list[dict[str, Any]] = Field(description="Targets that already carry an image: left untouched.")
    alreadyQueued: list[dict[str, Any]] = Field(description="Targets with a live job: not asked twice.")
    requestId: str


class CourseOut(BaseModel):
    courseId: str
    organizationId: UUID
    title: str
    subject: str | None = None
    gradeBand: str | None = None
    visibility: Visibility
    tags: list[str]
    contentVersion: int
    itemCount: int
    storagePath: str
    latestJobId: UUID | None = None
    updatedAt: datetime


class CourseListResponse(BaseModel):
    ok: Literal[True] = True
    courses: list[CourseOut]
    count: int
    requestId: str


# A tag filter is a free tag or a derived facet ("subject:water-cycle", "grade-band:3-5", "locale:fr",
# "strategy:llm"; course/tags.py).
TagFilter = Annotated[str, Field(max_length=120), FullMatch(
    r"(?:(?:subject|grade-band|locale|strategy):[A-Za-z0-9-]{1,100})|[a-z0-9]+(?:-[a-z0-9]+)*",
    "a tag filter is a free tag ('spring-term') or a facet ('subject:addition', 'grade-band:3-5', 'locale:fr', "
    "'strategy:llm')")]


class HealthResponse(BaseModel):
    ok: bool
    checks: dict[str, str]
    requestId: str


class HealthErrorResponse(ErrorResponse):
    checks: dict[str, str]
