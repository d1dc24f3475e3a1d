"""Typed rows and inputs of the job queues (shared/design/queue.md)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

JobTable = Literal["ai_course_jobs", "ai_media_jobs"]
JobStatus = Literal["pending", "processing", "done", "failed", "stale", "dead_letter"]
JOB_TABLES: tuple[str, ...] = ("ai_course_jobs", "ai_media_jobs")
COURSE_ID_PATTERN = r"^[a-z0-9-]{1,64}$"


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


class CourseJob(_Row):
    subject: str | None = None
    grade_band: str | None = None
    grade: str | None = None
    items_per_group: int
    levels_count: int | None = None
    study_texts_count: int | None = None
    mode: Literal["options", "numeric"]
    strategy: Literal["deterministic", "llm"] | None = None
    has_special_requests: bool
    wants_images: bool
    provider: str | None = None
    model: str | None = None
    tokens: int | None = None
    latency_ms: int | None = None
    processing_duration_ms: int | None = None
    generation_duration_ms: int | None = None
    summary: dict[str, Any] | None = None

    table: JobTable = "ai_course_jobs"


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


class NewCourseJob(BaseModel):
    """The columns a course request sets; the constraints mirror the table's CHECKs so bad input is
    rejected with a clear message before it reaches SQL."""

    model_config = ConfigDict(extra="forbid")

    course_id: str = Field(pattern=COURSE_ID_PATTERN)
    subject: str = Field(min_length=1, max_length=200)
    grade_band: str | None = Field(default=None, min_length=1, max_length=32)
    grade: str | None = Field(default=None, min_length=1, max_length=32)
    items_per_group: int = Field(default=12, ge=1, le=100)
    levels_count: int | None = Field(default=None, ge=1, le=20)
    study_texts_count: int | None = Field(default=None, ge=0, le=20)
    mode: Literal["options", "numeric"] = "options"
    strategy: Literal["deterministic", "llm"] | None = None
    has_special_requests: bool = False
    wants_images: bool = False
    priority: int = 100
    max_retries: int = Field(default=3, ge=0, le=20)


class TargetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["study_text", "item_stimulus", "item_option"]
    itemId: int | None = None
    sectionId: str | None = None
    optionIndex: int | None = None
    markerIndex: int | None = None


class NewMediaJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course_id: str = Field(pattern=COURSE_ID_PATTERN)
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
