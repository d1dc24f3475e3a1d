"""The HTTP contract: request and response models of the routes.

The enqueue payload *is* the domain's :class:`CourseRequest`, made exact: strict JSON types (no ``"5"``
for 5) and none of the human spellings the Python API forgives. Its published schema therefore accepts
precisely what the service accepts, which is what lets clients (and the schema fuzzer) trust it. Every
pattern is a full match (:class:`FullMatch`): a trailing newline is refused, never stripped.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ignite_dagster.api.errors import ErrorResponse, IssueOut
from ignite_dagster.catalog.publishing import CHANGE_SUMMARY_MAX
from ignite_dagster.course.request import (
    BAND_REGEX,
    FIELD_ALIASES,
    CourseId,
    CourseRequest,
    FullMatch,
    Visibility,
)
from ignite_dagster.media.targets import SPEC_REGEX
from ignite_dagster.queue import CourseJob, JobEvent, MediaJob

JobTableName = Literal["ai_course_jobs", "ai_media_jobs"]
JobStatusName = Literal["pending", "processing", "done", "failed", "stale", "dead_letter"]
# The original system's job types that name jobs of this service, and the table holding them.
JobTypeName = Literal["ai_course_generate", "image"]
JOB_TYPE_TABLES: dict[str, JobTableName] = {"ai_course_generate": "ai_course_jobs", "image": "ai_media_jobs"}

# Free text that reaches Postgres must hold no NUL (Postgres text cannot store it); a prompt must also
# hold a visible character. Blanks are spelled out: Python's and ECMA-262's ``\s`` differ.
_BLANK = r"\t\n\v\f\r\x1c-\x1f \x85\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NoNul = Annotated[str, FullMatch(r"[^\x00]*", "must not contain NUL characters")]
NotBlank = Annotated[str, FullMatch(rf"[^\x00]*[^\x00{_BLANK}][^\x00]*", "must hold a visible character and no NUL")]


def camel(name: str) -> str:
    """``items_per_group`` → ``itemsPerGroup``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _publish_seed_spellings(schema: dict[str, Any]) -> None:
    """Publish what the payload accepts besides its own field names (CourseRequest's docstring): the
    original system's camelCase aliases, each with its field's schema, either one satisfying a required
    field; and ``grade`` holding a grade band."""
    props: dict[str, Any] = schema.get("properties", {})
    required: list[str] = schema.get("required", [])
    all_of: list[dict[str, Any]] = []
    for alias, name in FIELD_ALIASES.items():
        if name not in props:
            continue
        props[alias] = {**props[name], "title": alias, "description": f"The original system's spelling of {name} "
                        "(give one of them, or the same value in both)."}
        if name in required:
            required.remove(name)
            all_of.append({"anyOf": [{"required": [name]}, {"required": [alias]}]})
    grade = props.get("grade")
    if grade is not None:
        band = {"type": "string", "pattern": f"^(?:{BAND_REGEX})$", "description": "A grade band: the same as grade_band."}
        props["grade"] = {"anyOf": [band, *grade.get("anyOf", [grade])], "default": None,
                          "description": "A single grade (K or 1..12), or a grade band (then equal to grade_band "
                          "or instead of it).", "title": "Grade"}
    # one of grade_band, gradeBand or grade
    all_of.append({"anyOf": [{"required": ["grade_band"]}, {"required": ["gradeBand"]}, {"required": ["grade"]}]})
    schema.pop("anyOf", None)
    schema["allOf"] = all_of
    if required:
        schema["required"] = required


class EnqueuePayload(CourseRequest):
    """The ``ai_course_generate`` payload: the course request, exact (strict JSON types, canonical
    spellings, plus the original system's spellings CourseRequest reads). Every field comes from
    CourseRequest; this class only changes how strictly they are read."""

    model_config = ConfigDict(strict=True, title="EnqueuePayload", json_schema_extra=_publish_seed_spellings)
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
    # what the original job-status answered at the top level (its clients' getJobStatus reads them)
    state: JobStatusName = Field(description="The job's status (the same as status).")
    step: str | None = Field(description="The stage the job is in (progress stage), else its last event's step.")
    progress: int = Field(ge=0, le=100, description="Percent done: the job's progress, 100 once done.")
    message: str = Field(description="The progress message, or the error of a failed job; empty when neither.")
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
    # changeSummary or the original's changelog, not both (also in the published schema)
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"not": {"required": ["changeSummary", "changelog"]}})

    courseId: CourseId
    changeSummary: NoNul | None = Field(default=None, max_length=CHANGE_SUMMARY_MAX)
    changelog: NoNul | None = Field(
        default=None, max_length=CHANGE_SUMMARY_MAX,
        description="The original system's name for changeSummary (give one of them, not both).")

    @model_validator(mode="after")
    def _one_summary(self) -> PublishBody:
        if self.changelog is not None and self.changeSummary is not None:
            raise ValueError("changelog: send either changelog (the original's name) or changeSummary, not both")
        return self

    @property
    def summary(self) -> str | None:
        return self.changeSummary if self.changeSummary is not None else self.changelog


class PublishResponse(BaseModel):
    ok: Literal[True] = True
    courseId: str
    version: int
    snapshotId: int = Field(description="Id of the version's course_versions row.")
    contentVersion: int = Field(description="The course's content version after publishing (= version).")
    publishedAt: datetime
    etag: int
    storagePath: str
    contentSha256: str
    catalogVersion: int
    warnings: list[IssueOut]
    requestId: str


ImageSize = Annotated[str, FullMatch(r"[1-9][0-9]{1,3}x[1-9][0-9]{1,3}", "a size is <width>x<height>, e.g. 1024x1024")]
AspectRatio = Annotated[str, FullMatch(r"[1-9][0-9]{0,2}:[1-9][0-9]{0,2}", "an aspect ratio is <w>:<h>, e.g. 16:9")]


ImageQuality = Literal["standard", "hd", "low", "medium", "high", "auto"]


class MediaOptions(BaseModel):
    """The original system's image options; each is passed on or refused naming it.

    ``size``, ``style`` and ``quality`` go to the image provider (``quality``: ``standard``/``hd`` for
    DALL·E 3, ``low``/``medium``/``high``/``auto`` for gpt-image models; a value the configured model does
    not know is the provider's 4xx, answered as a 422). ``aspectRatio`` alone must be the ratio of the
    configured size (IGNITE_IMAGE_SIZE), else 422. Given next to ``size`` it cannot change the pixels:
    the size decides, as it did in the original system (whose editor sends ``aspectRatio: "16:9"`` with
    ``size: "1024x1024"``), and the response says so (``aspectRatio`` = the delivered ratio, and a note)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    size: ImageSize | None = None
    aspectRatio: AspectRatio | None = None
    style: str | None = Field(default=None, max_length=200)
    quality: ImageQuality | None = None


def _not_both(name: str) -> dict[str, Any]:
    """JSON Schema for "not ``name`` at the top level and in options as well"."""
    return {"not": {"required": [name, "options"], "properties": {"options": {"required": [name]}}}}


class MediaBody(BaseModel):
    # size and style at the top level (this service's) or in options (the original's), not both
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"allOf": [_not_both("size"), _not_both("style")]})

    prompt: NotBlank = Field(min_length=1, max_length=4000)
    kind: Literal["image"] = Field(default="image", description="Only images are generated here.")
    style: str | None = Field(default=None, max_length=200)
    size: ImageSize | None = Field(default=None, description="e.g. 1024x1024")
    options: MediaOptions | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> MediaBody:
        opts = self.options
        if opts is None:
            return self
        for name in ("size", "style"):
            given, nested = getattr(self, name), getattr(opts, name)
            if given is not None and nested is not None:
                raise ValueError(f"options.{name}: send {name} at the top level or in options, not both")
        return self

    def image_size(self) -> str | None:
        return self.size or (self.options.size if self.options else None)

    def image_style(self) -> str | None:
        return self.style or (self.options.style if self.options else None)

    def image_quality(self) -> str | None:
        return self.options.quality if self.options else None


class MediaResponse(BaseModel):
    ok: Literal[True] = True
    url: str
    alt: str = Field(description="Alt text for the image: the prompt it was generated from.")
    mimeType: str
    width: int
    height: int
    provider: str | None = None
    path: str
    tempPath: str = Field(description="The original system's name for path.")
    aspectRatio: str = Field(description="The delivered image's ratio, reduced (1024x1024 → 1:1).")
    notes: list[str] = Field(default_factory=list,
                             description="What the request asked for that the image differs from, and why.")
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


# -- the original system's job and course reads (get-course-job, list-course-jobs, get-course) ----------
# Its pages read job rows by their column names (snake_case): these models are the job row as stored.

_COURSE_JOB_QUEUE_FIELDS: dict[str, Any] = {
    "id": (UUID, ...),
    "organization_id": (UUID, ...),
    "status": (JobStatusName, ...),
    "course_id": (str, ...),
    "progress_stage": (str | None, None),
    "progress_percent": (int | None, None),
    "progress_message": (str | None, None),
    "error": (str | None, None),
    "reason_code": (str | None, None),
    "summary": (dict[str, Any] | None, None),
    "result_path": (str | None, None),
    "has_special_requests": (bool, ...),
    "priority": (int, ...),
    "attempt": (int, ...),
    "retry_count": (int, ...),
    "max_retries": (int, ...),
    "next_attempt_at": (datetime, ...),
    "idempotency_key": (str | None, None),
    "created_by": (UUID | None, None),
    "requested_by": (str | None, None),
    "created_at": (datetime, ...),
    "updated_at": (datetime, ...),
    "started_at": (datetime | None, None),
    "completed_at": (datetime | None, None),
    "last_heartbeat": (datetime | None, None),
    "generation_duration_ms": (int | None, None),
    "processing_duration_ms": (int | None, None),
    "provider": (str | None, None),
    "model": (str | None, None),
    "tokens": (int | None, None),
    "cost_usd": (float | None, None),
    "cost_known": (bool | None, None),
    "dagster_run_id": (str | None, None),
}

CourseJobRecord = create_model(
    "CourseJobRecord",
    __doc__="One ai_course_jobs row under its column names: the queue's columns and the request's.",
    **_COURSE_JOB_QUEUE_FIELDS,
    **{name: (CourseJob.model_fields[name].annotation, None) for name in CourseRequest.column_names()
       if name != "course_id"},
)


def course_job_record(job: CourseJob) -> BaseModel:
    values = {name: getattr(job, name) for name in CourseJobRecord.model_fields}
    values["cost_usd"] = float(job.cost_usd) if job.cost_usd is not None else None
    return CourseJobRecord(**values)


class JobEventRecord(BaseModel):
    """One job_events row under its column names."""

    id: int
    job_id: UUID
    job_table: JobTableName
    attempt: int | None = None
    seq: int
    step: str
    status: Literal["info", "success", "error"]
    progress: int | None = None
    message: str | None = None
    meta: dict[str, Any] | None = None
    created_at: datetime

    @classmethod
    def of(cls, event: JobEvent) -> JobEventRecord:
        return cls(**event.model_dump())


class CourseJobResponse(BaseModel):
    ok: Literal[True] = True
    job: CourseJobRecord  # type: ignore[valid-type]
    events: list[JobEventRecord] = Field(description="Oldest first; empty unless includeEvents=true.")
    requestId: str


COURSE_JOBS_PAGE_MAX = 100


class ListCourseJobsBody(BaseModel):
    """The filters of ``list-course-jobs`` sent as a JSON body (POST); the same as its query."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _json_values(cls, data: Any) -> Any:
        """Read as JSON reads: ``3.0`` is the integer 3, a job id is a string (strict mode takes neither)."""
        if isinstance(data, dict):
            data = {k: int(v) if isinstance(v, float) and v.is_integer() and k in ("limit", "offset") else v
                    for k, v in data.items()}
            if isinstance(data.get("jobId"), str):
                with contextlib.suppress(ValueError):  # not a UUID: refused below, naming jobId
                    data["jobId"] = UUID(data["jobId"])
        return data

    status: JobStatusName | None = None
    sinceHours: float | None = Field(default=None, gt=0, le=24 * 3660, description="Created within this many hours.")
    limit: int = Field(default=50, ge=1, le=COURSE_JOBS_PAGE_MAX)
    offset: int = Field(default=0, ge=0, le=1_000_000)
    search: Annotated[str, Field(min_length=1, max_length=200), FullMatch(r"[^\x00]*", "must not contain NUL characters")] | None = Field(
        default=None, description="Case-insensitive text in the subject.")
    jobId: UUID | None = None


class ListCourseJobsResponse(BaseModel):
    ok: Literal[True] = True
    jobs: list[CourseJobRecord]  # type: ignore[valid-type]
    total: int = Field(description="Jobs matching the filters in all (not only this page).")
    limit: int
    offset: int
    requestId: str


class CourseEnvelope(BaseModel):
    """A course as the original system's get-course served it: ``{id, format, content}``, where content
    is the stored course.json (Course v2, course-format.md) and format is ``practice``."""

    id: str
    format: Literal["practice"] = "practice"
    content: dict[str, Any]
