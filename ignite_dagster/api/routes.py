"""The routes: thin adapters from HTTP to the domain (queue, requests, publishing, live media).

Each route authenticates (except ``/health``), applies the organization boundary, calls one domain
function and shapes its answer. The domain is synchronous (psycopg pool, blocking storage), so each
route is an ``async def`` that runs its blocking part as *one* ``work()`` call in the thread pool:
a plain ``def`` route would cost FastAPI three thread hops per request (dependency, handler, response
validation), and every hop is a GIL hand-off that shows up in tail latency under load.

Status choices worth knowing:

* enqueue answers **202** for a new job and **200** for an idempotent replay (nothing new accepted),
  both with ``replayed`` in the body;
* another organization's job or course is **404**, exactly like a missing one (existence never leaks);
  a visible resource the caller may not change is **403**;
* requeueing a job that is not ``failed``/``stale``/``dead_letter`` is **409**.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from ignite_dagster.api.app import AppDeps
from ignite_dagster.api.errors import ApiError, ErrorResponse, IssueOut, log, request_id_of
from ignite_dagster.api.ratelimit import TokenBucketLimiter
from ignite_dagster.auth import (
    AuthError,
    Principal,
    can_read,
    can_write,
    parse_organization_header,
    resolve_write_organization,
)
from ignite_dagster.catalog.publishing import (
    CHANGE_SUMMARY_MAX,
    COURSE_ID_PATTERN,
    PublishError,
    publish_course,
)
from ignite_dagster.course.request import NOTES_MAX, STUDY_TEXT_MAX, CourseRequest
from ignite_dagster.course_jobs.submit import submit_course_request
from ignite_dagster.queue import CourseJob, JobEvent, MediaJob
from ignite_dagster.storage.base import StorageError

router = APIRouter()
audit_log = logging.getLogger("ignite_dagster.api.audit")

JobTableName = Literal["ai_course_jobs", "ai_media_jobs"]
JobStatusName = Literal["pending", "processing", "done", "failed", "stale", "dead_letter"]

# -- OpenAPI error documentation ---------------------------------------------------------------------

_ERROR_DESCRIPTIONS = {
    400: "Malformed header (x-organization-id, x-user-id) or organization needed.",
    401: "Missing or invalid credentials.",
    403: "Authenticated, but the role does not allow this in the organization.",
    404: "No such job, course or organization visible to the caller.",
    409: "Conflict with the resource's current state.",
    413: "Request body too large.",
    422: "Invalid input; the message names the field.",
    429: "Rate limited; see Retry-After.",
    500: "Unexpected error; quote the requestId.",
    502: "The image provider failed.",
    503: "A dependency (database, storage, key server, image model) is unavailable.",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[c]} for c in codes}


_READ_ERRORS = (400, 401, 403, 404, 422, 500, 503)
_WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 422, 500, 503)

# -- auth dependencies --------------------------------------------------------------------------------
# The security objects only document the schemes in OpenAPI; Authenticator reads the raw headers.

_bearer = HTTPBearer(auto_error=False, scheme_name="BearerJWT", description="User session JWT.")
_agent_token = APIKeyHeader(
    name="x-agent-token", auto_error=False, scheme_name="AgentToken", description="Agent token (AGENT_TOKEN)."
)
_agent_org = APIKeyHeader(
    name="x-organization-id",
    auto_error=False,
    scheme_name="AgentOrganization",
    description="Organization UUID. Required for agents; selects the organization of a write for users in several.",
)
_agent_user = APIKeyHeader(
    name="x-user-id", auto_error=False, scheme_name="AgentUser", description="Agent's user id, audit text only."
)


def deps_of(request: Request) -> AppDeps:
    return request.app.state.deps


def current_principal(
    request: Request,
    _bearer_doc: Annotated[Any, Security(_bearer)] = None,
    _token_doc: Annotated[Any, Security(_agent_token)] = None,
    _org_doc: Annotated[Any, Security(_agent_org)] = None,
    _user_doc: Annotated[Any, Security(_agent_user)] = None,
) -> Principal:
    try:
        return deps_of(request).authenticator.authenticate(request.headers)
    except AuthError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise ApiError(exc.status, exc.code, exc.message, headers=headers) from exc


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def _limit(limiter: TokenBucketLimiter, principal: Principal, what: str) -> None:
    wait = limiter.acquire(principal.rate_key)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"too many {what} requests; retry in {TokenBucketLimiter.retry_after_header(wait)} s",
            headers={"Retry-After": TokenBucketLimiter.retry_after_header(wait)},
        )


async def enqueue_principal(request: Request, principal: PrincipalDep) -> Principal:
    """Auth, then the caller's enqueue bucket — before the body is validated, so a flood of invalid
    requests is limited too. ``async``: the bucket is a microsecond in memory, not worth a thread hop."""
    _limit(deps_of(request).enqueue_limiter, principal, "enqueue")
    return principal


async def media_principal(request: Request, principal: PrincipalDep) -> Principal:
    _limit(deps_of(request).media_limiter, principal, "image generation")
    return principal


def _write_org(request: Request, principal: Principal) -> UUID:
    try:
        requested = parse_organization_header(request.headers.get("x-organization-id"))
        return resolve_write_organization(principal, requested, deps_of(request).pool)
    except AuthError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc


# -- models -------------------------------------------------------------------------------------------


def _band_pattern() -> str:
    """Every grade band ``low-high`` with K/0 <= low <= high <= 12, spelled out: a plain regex cannot
    compare numbers, and the published schema must accept exactly what the service accepts."""
    grades = [str(n) for n in range(13)]
    alternatives = ["(?:K|k|0)-(?:" + "|".join(grades) + ")"]
    alternatives += [f"{low}-(?:" + "|".join(grades[low:]) + ")" for low in range(1, 13)]
    return "^(?:" + "|".join(alternatives) + ")$"


_INT_FIELDS = frozenset({"grade", "items_per_group", "levels_count", "study_texts_count", "groups_count"})
_GRADE_PATTERN = r"^(?:K|k|[0-9]|1[0-2])$"
# Text that reaches Postgres must hold a non-blank character and no NUL (Postgres text cannot store it).
# (Unpaired UTF-16 surrogates, the other text Postgres refuses, are already rejected by pydantic.)
_NOT_BLANK = r"^[^\x00]*[^\x00\s][^\x00]*$"
_NO_NUL = r"^[^\x00]*$"
_LOCALE_PATTERN = r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}$"


class EnqueuePayload(BaseModel):
    """The ``ai_course_generate`` payload as the HTTP contract states it.

    It carries the same fields as the domain's ``CourseRequest`` (a test keeps them in step) but is
    *exact* where the domain is lenient: strict JSON types (no ``"5"`` for 5), canonical grade bands,
    no reliance on whitespace stripping. The published schema then accepts precisely what the service
    accepts, which is what lets clients (and the schema fuzzer) trust it. The validated payload is
    handed to ``CourseRequest`` unchanged.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        regex_engine="python-re",
        json_schema_extra={
            "anyOf": [
                {"required": ["grade_band"], "properties": {"grade_band": {"type": "string"}}},
                {"required": ["grade"], "properties": {"grade": {"type": ["string", "integer"]}}},
            ]
        },
    )

    course_id: str = Field(pattern=COURSE_ID_PATTERN, description="Lower-case letters, digits and '-'.")
    subject: str = Field(min_length=1, max_length=200, pattern=_NOT_BLANK)
    grade_band: str | None = Field(default=None, pattern=_band_pattern(), description="e.g. K-2, 3-5, 6-8, 9-12")
    grade: Annotated[str, Field(pattern=_GRADE_PATTERN)] | Annotated[int, Field(ge=0, le=12)] | None = Field(
        default=None, description="A single grade (K or 1..12); implies its band when grade_band is absent."
    )
    items_per_group: int = Field(default=12, ge=1, le=100)
    mode: Literal["options", "numeric"] = "options"
    notes: str | None = Field(default=None, max_length=NOTES_MAX)
    study_text: str | None = Field(default=None, max_length=STUDY_TEXT_MAX)
    levels_count: int | None = Field(default=None, ge=1, le=20)
    study_texts_count: int | None = Field(default=None, ge=0, le=20)
    groups_count: int | None = Field(default=None, ge=1, le=12)
    wants_images: bool = False
    strategy: Literal["deterministic", "llm"] | None = None
    locale: str = Field(default="en", max_length=16, pattern=_LOCALE_PATTERN)

    @model_validator(mode="before")
    @classmethod
    def _whole_floats(cls, data: Any) -> Any:
        """``3.0`` is the integer 3 in JSON; strict mode would refuse it, and ``"3"`` must stay refused."""
        if isinstance(data, dict):
            data = {
                k: int(v) if k in _INT_FIELDS and isinstance(v, float) and v.is_integer() else v
                for k, v in data.items()
            }
        return data

    @model_validator(mode="after")
    def _band_or_grade(self) -> EnqueuePayload:
        if self.grade_band is None and self.grade is None:
            raise ValueError("one of grade_band (e.g. '3-5') or grade (e.g. '4') is required")
        return self

    def to_request(self) -> CourseRequest:
        return CourseRequest.model_validate(self.model_dump(exclude_unset=True))


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
    # course jobs
    subject: str | None = None
    gradeBand: str | None = None
    grade: str | None = None
    itemsPerGroup: int | None = None
    levelsCount: int | None = None
    studyTextsCount: int | None = None
    mode: str | None = None
    strategy: str | None = None
    wantsImages: bool | None = None
    hasSpecialRequests: bool | None = None
    tokens: int | None = None
    summary: dict[str, Any] | None = None
    # media jobs
    mediaType: str | None = None
    prompt: str | None = None
    style: str | None = None
    targetRef: dict[str, Any] | None = None
    resultUrl: str | None = None

    @classmethod
    def of(cls, job: CourseJob | MediaJob) -> JobOut:
        common: dict[str, Any] = dict(
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
            common.update(
                subject=job.subject,
                gradeBand=job.grade_band,
                grade=job.grade,
                itemsPerGroup=job.items_per_group,
                levelsCount=job.levels_count,
                studyTextsCount=job.study_texts_count,
                mode=job.mode,
                strategy=job.strategy,
                wantsImages=job.wants_images,
                hasSpecialRequests=job.has_special_requests,
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
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")

    courseId: str = Field(pattern=COURSE_ID_PATTERN)
    changeSummary: str | None = Field(default=None, max_length=CHANGE_SUMMARY_MAX, pattern=_NO_NUL)


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
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")

    prompt: str = Field(min_length=1, max_length=4000, pattern=_NOT_BLANK)
    style: str | None = Field(default=None, max_length=200)
    size: str | None = Field(default=None, pattern=r"^[0-9]{2,4}x[0-9]{2,4}$", description="e.g. 1024x1024")


class MediaResponse(BaseModel):
    ok: Literal[True] = True
    url: str
    path: str
    details: dict[str, Any] = Field(default_factory=dict, description="Anything else the generator reported.")
    requestId: str


class HealthResponse(BaseModel):
    ok: bool
    checks: dict[str, str]
    requestId: str


class HealthErrorResponse(ErrorResponse):
    checks: dict[str, str]


# -- helpers ------------------------------------------------------------------------------------------


def _find_job(
    deps: AppDeps, principal: Principal, job_id: UUID, table: JobTableName | None
) -> CourseJob | MediaJob:
    """The job if the caller may read it; 404 otherwise (also for another organization's job).

    When the caller can see exactly one organization the query itself is scoped to it, so the
    boundary holds in SQL and not only in the check below.
    """
    scope = principal.organizations[0] if (not principal.is_superadmin and len(principal.roles) == 1) else None
    tables: tuple[JobTableName, ...] = (table,) if table else ("ai_course_jobs", "ai_media_jobs")
    for name in tables:
        job = deps.queue.get(job_id, name, organization_id=scope)
        if job is not None and can_read(principal, job.organization_id):
            return job
    raise ApiError(404, "not_found", f"job {job_id} not found")


def _status_word(status: str) -> str:
    return "queued" if status == "pending" else status


_COMPARED = ("course_id", "subject", "grade_band", "grade", "items_per_group", "mode", "levels_count",
             "study_texts_count", "wants_images", "strategy")


# -- routes -------------------------------------------------------------------------------------------


@router.post(
    "/functions/v1/enqueue-job",
    status_code=202,
    response_model=EnqueueResponse,
    summary="Enqueue a course generation job",
    responses={
        200: {"model": EnqueueResponse, "description": "Idempotent replay: the existing job."},
        **_errors(*_WRITE_ERRORS, 429),
    },
)
async def enqueue_job(
    body: EnqueueBody,
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(enqueue_principal)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Same key (per organization) → same job; the replay answers 200 with replayed=true.",
        ),
    ] = None,
) -> EnqueueResponse:
    """Queue a course generation. Notes and study text are saved to storage before the job exists; if
    that fails nothing is queued (503)."""

    def work() -> EnqueueResponse:
        deps = deps_of(request)
        org = _write_org(request, principal)
        try:
            course_request = body.payload.to_request()
        except ValidationError as exc:  # the contract model should make this unreachable; say what failed
            raise ApiError(422, "invalid_request", f"payload: {exc.errors()[0].get('msg', 'invalid')}") from exc
        try:
            result = submit_course_request(
                deps.queue,
                deps.store,
                course_request,
                organization_id=org,
                idempotency_key=idempotency_key,
                created_by=principal.user_id if principal.kind == "user" else None,
                requested_by=principal.audit_text(),
            )
        except (StorageError, OSError) as exc:
            log.error("special requests not saved (nothing enqueued): %s", exc)
            raise ApiError(503, "storage_unavailable", "could not save the request's notes; nothing was enqueued") from exc
        job = result.job
        assert isinstance(job, CourseJob)
        if result.replayed:
            wanted = course_request
            differing = [f for f in _COMPARED if getattr(job, f) != getattr(wanted, f)]
            if differing:
                raise ApiError(
                    409,
                    "idempotency_conflict",
                    f"Idempotency-Key was used for a different request (differs in: {', '.join(differing)})",
                )
            response.status_code = 200
        audit_log.info("enqueue job=%s org=%s by=%s replayed=%s", job.id, org, principal.rate_key, result.replayed)
        return EnqueueResponse(
            jobId=job.id,
            status=_status_word(job.status),
            jobStatus=job.status,
            replayed=result.replayed,
            requestId=request_id_of(request),
        )

    return await run_in_threadpool(work)


@router.get(
    "/functions/v1/job-status",
    response_model=JobStatusResponse,
    summary="One job with its progress and events",
    responses=_errors(*_READ_ERRORS),
)
async def job_status(
    request: Request,
    principal: PrincipalDep,
    jobId: Annotated[UUID, Query(description="The job id returned by enqueue-job.")],
    jobTable: Annotated[JobTableName | None, Query(description="Default: look in both tables.")] = None,
    eventsLimit: Annotated[int, Query(ge=0, le=1000, description="Most recent events to include.")] = 100,
) -> JobStatusResponse:
    def work() -> JobStatusResponse:
        deps = deps_of(request)
        job = _find_job(deps, principal, jobId, jobTable)
        events = deps.queue.events(job.id)[-eventsLimit:] if eventsLimit else []
        return JobStatusResponse(
            jobId=job.id,
            status=job.status,
            job=JobOut.of(job),
            events=[EventOut.of(e) for e in events],
            requestId=request_id_of(request),
        )

    return await run_in_threadpool(work)


@router.get(
    "/functions/v1/list-jobs",
    response_model=JobListResponse,
    summary="Jobs visible to the caller, newest first",
    responses=_errors(*_READ_ERRORS),
)
async def list_jobs(
    request: Request,
    principal: PrincipalDep,
    status: Annotated[JobStatusName | None, Query()] = None,
    courseId: Annotated[str | None, Query(pattern=COURSE_ID_PATTERN)] = None,
    organizationId: Annotated[UUID | None, Query(description="Only this organization (must be visible).")] = None,
    jobTable: Annotated[JobTableName, Query()] = "ai_course_jobs",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobListResponse:
    def work() -> JobListResponse:
        deps = deps_of(request)
        if organizationId is not None:
            if not can_read(principal, organizationId):
                raise ApiError(404, "organization_not_found", f"organization {organizationId} not found")
            orgs: list[UUID | None] = [organizationId]
        elif principal.is_superadmin:
            orgs = [None]  # every organization
        else:
            orgs = list(principal.organizations)
        jobs: list[CourseJob | MediaJob] = []
        for org in orgs:
            jobs.extend(deps.queue.list(jobTable, organization_id=org, status=status, course_id=courseId, limit=limit))
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        jobs = jobs[:limit]
        return JobListResponse(jobs=[JobOut.of(j) for j in jobs], count=len(jobs), requestId=request_id_of(request))

    return await run_in_threadpool(work)


@router.post(
    "/functions/v1/requeue-job",
    response_model=RequeueResponse,
    summary="Put a failed, stale or dead-lettered job back in the queue",
    responses=_errors(*_WRITE_ERRORS),
)
async def requeue_job(body: RequeueBody, request: Request, principal: PrincipalDep) -> RequeueResponse:
    def work() -> RequeueResponse:
        deps = deps_of(request)
        job = _find_job(deps, principal, body.jobId, body.jobTable)
        if not can_write(principal, job.organization_id):
            raise ApiError(403, "forbidden", "requeueing needs the editor or org_admin role in the job's organization")
        if not deps.queue.requeue(job.id, body.jobTable):
            current = deps.queue.get(job.id, body.jobTable)
            state = current.status if current is not None else job.status
            raise ApiError(
                409, "not_requeueable", f"job is {state}; only failed, stale or dead_letter jobs can be requeued"
            )
        who = principal.audit_text() or f"user {principal.user_id}"
        deps.queue.event(job.id, body.jobTable, None, "requeued", "info", message=f"requeued via API by {who}")
        audit_log.info("requeue job=%s by=%s", job.id, principal.rate_key)
        return RequeueResponse(jobId=job.id, jobTable=body.jobTable, requestId=request_id_of(request))

    return await run_in_threadpool(work)


@router.post(
    "/functions/v1/publish-course",
    response_model=PublishResponse,
    summary="Publish the course's current content as a new immutable version",
    responses=_errors(*_WRITE_ERRORS),
)
async def publish(body: PublishBody, request: Request, principal: PrincipalDep) -> PublishResponse:
    def work() -> PublishResponse:
        deps = deps_of(request)
        try:
            result = publish_course(
                deps.pool, deps.store, body.courseId, principal_or_actor=principal, change_summary=body.changeSummary
            )
        except PublishError as exc:
            issues = [i.model_dump() for i in exc.issues] if exc.issues else None
            raise ApiError(exc.status, exc.code, exc.message, issues=issues) from exc
        audit_log.info("publish course=%s version=%s by=%s", result.course_id, result.version, principal.rate_key)
        return PublishResponse(
            courseId=result.course_id,
            version=result.version,
            etag=result.etag,
            storagePath=result.storage_path,
            contentSha256=result.content_sha256,
            catalogVersion=result.catalog_version,
            warnings=[IssueOut(**i.model_dump()) for i in result.warnings],
            requestId=request_id_of(request),
        )

    return await run_in_threadpool(work)


# The provider's reason code → our status: the caller's prompt is at fault (422), the provider is
# busy or down (503, retry later), anything else from upstream — including our own key being refused
# (provider_auth) — is a bad gateway (502).
_PROVIDER_STATUS = {
    "content_refused": 422,
    "invalid_request": 422,
    "model_not_configured": 503,
    "provider_rate_limited": 503,
    "provider_unavailable": 503,
    "provider_quota": 503,
}


@router.post(
    "/functions/v1/ai-generate-media",
    response_model=MediaResponse,
    summary="Generate one image now (synchronous)",
    responses=_errors(*_WRITE_ERRORS, 429, 502),
)
async def ai_generate_media(
    body: MediaBody, request: Request, principal: Annotated[Principal, Depends(media_principal)]
) -> MediaResponse:
    """Stores the image under media-library/tmp/ai-generated/. 503 ``not_available`` when this build has
    no live image generator or no image model is configured."""

    def work() -> MediaResponse:
        deps = deps_of(request)
        _write_org(request, principal)  # costs money: only callers who may write somewhere
        try:
            from ignite_dagster.media.live import generate_live_image
        except ModuleNotFoundError as exc:
            if exc.name not in ("ignite_dagster.media", "ignite_dagster.media.live"):
                raise
            raise ApiError(503, "not_available", "live image generation is not available in this build") from exc
        settings = deps.settings
        if not (settings.openai_api_key and settings.image_model):
            raise ApiError(
                503, "not_available", "no image model is configured (the operator must set OPENAI_API_KEY and IGNITE_IMAGE_MODEL)"
            )
        try:
            result = generate_live_image(settings, deps.store, body.prompt, style=body.style, size=body.size)
        except Exception as exc:
            reason = getattr(exc, "reason_code", None)
            if reason is None:
                raise
            status = _PROVIDER_STATUS.get(reason, 502)
            code = "not_available" if reason == "model_not_configured" else reason
            retry_after = getattr(exc, "retry_after", None)
            headers = {"Retry-After": TokenBucketLimiter.retry_after_header(retry_after)} if retry_after else None
            raise ApiError(status, code, getattr(exc, "message", str(exc)), headers=headers) from exc
        data = dict(result) if not isinstance(result, BaseModel) else result.model_dump(mode="json")
        url, path = data.pop("url"), data.pop("path")
        return MediaResponse(url=str(url), path=str(path), details=data, requestId=request_id_of(request))

    return await run_in_threadpool(work)


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Database and storage reachability (no auth)",
    responses={503: {"model": HealthErrorResponse, "description": "A dependency is down."}},
)
async def health(request: Request) -> Any:
    def work() -> Any:
        deps = deps_of(request)
        checks: dict[str, str] = {}
        try:
            with deps.pool.connection(timeout=2.0) as conn:
                conn.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - health reports, it does not raise
            log.warning("health: database check failed: %s", exc)
            checks["database"] = "unavailable"
        try:
            # A write probe: a read-only volume passes a read check and still fails every enqueue with notes.
            deps.store.put("courses/debug/health/probe.json", b'{"ok": true}\n', content_type="application/json")
            checks["storage"] = "ok"
        except Exception as exc:  # noqa: BLE001
            log.warning("health: storage check failed: %s", exc)
            checks["storage"] = "unavailable"
        rid = request_id_of(request)
        if all(v == "ok" for v in checks.values()):
            return HealthResponse(ok=True, checks=checks, requestId=rid)
        down = ", ".join(k for k, v in checks.items() if v != "ok")
        raise ApiError(503, "unhealthy", f"unavailable: {down}", extra={"checks": checks})

    return await run_in_threadpool(work)