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
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ignite_dagster.api.dependencies import (
    PrincipalDep,
    deps_of,
    enqueue_principal,
    find_job,
    media_principal,
    write_org,
)
from ignite_dagster.api.errors import ApiError, ErrorResponse, IssueOut, log, request_id_of
from ignite_dagster.api.ratelimit import TokenBucketLimiter
from ignite_dagster.api.schemas import (
    JOB_TYPE_TABLES,
    CourseListResponse,
    CourseMediaBody,
    CourseMediaResponse,
    CourseOut,
    EnqueueBody,
    EnqueueResponse,
    EventOut,
    HealthErrorResponse,
    HealthResponse,
    JobListResponse,
    JobOut,
    JobStatusName,
    JobStatusResponse,
    JobTableName,
    JobTypeName,
    MediaBody,
    MediaResponse,
    PublishBody,
    PublishResponse,
    RequeueBody,
    RequeueResponse,
    TagFilter,
)
from ignite_dagster.auth import Principal, can_read, can_write
from ignite_dagster.catalog.publishing import PublishError, publish_course
from ignite_dagster.catalog.reading import published_version
from ignite_dagster.course.request import CourseId, GradeBand, Subject, Visibility
from ignite_dagster.course_jobs.submit import IdempotencyConflict, RequestRefused, submit_course_request
from ignite_dagster.queue import CourseJob
from ignite_dagster.queue.listing import find_jobs
from ignite_dagster.storage.base import StorageError
from ignite_dagster.storage.keys import HEALTH_PROBE_KEY

router = APIRouter()
audit_log = logging.getLogger("ignite_dagster.api.audit")

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

# -- helpers ------------------------------------------------------------------------------------------


def _status_word(status: str) -> str:
    return "queued" if status == "pending" else status


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
        org = write_org(request, principal)
        try:
            result = submit_course_request(
                deps.queue,
                deps.store,
                body.payload,
                organization_id=org,
                idempotency_key=idempotency_key,
                created_by=principal.user_id if principal.kind == "user" else None,
                requested_by=principal.audit_text(),
                model_configured=deps.settings.model_configured,
                images_configured=deps.settings.images_configured,
            )
        except IdempotencyConflict as exc:
            raise ApiError(409, exc.code, str(exc)) from exc
        except RequestRefused as exc:
            raise ApiError(422, exc.code, f"payload: {exc}") from exc
        except (StorageError, OSError) as exc:
            log.error("special requests not saved (nothing enqueued): %s", exc)
            raise ApiError(503, "storage_unavailable", "could not save the request's notes; nothing was enqueued") from exc
        job = result.job
        assert isinstance(job, CourseJob)
        if result.replayed:
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
        job = find_job(deps, principal, jobId, jobTable)
        all_events = deps.queue.events(job.id)
        events = all_events[-eventsLimit:] if eventsLimit else []
        last = all_events[-1] if all_events else None
        return JobStatusResponse(
            jobId=job.id,
            status=job.status,
            state=job.status,
            step=job.progress_stage or (last.step if last else None),
            progress=100 if job.status == "done" else max(0, min(100, job.progress_percent or 0)),
            message=job.progress_message or job.error or "",
            job=JobOut.of(job, deps.settings.dagster_ui_url),
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
    courseId: Annotated[CourseId | None, Query()] = None,
    organizationId: Annotated[UUID | None, Query(description="Only this organization (must be visible).")] = None,
    jobTable: Annotated[JobTableName | None, Query(description="Default: ai_course_jobs (or jobType's table).")] = None,
    jobType: Annotated[JobTypeName | None, Query(
        description="The original system's job type: ai_course_generate (course jobs) or image (image media jobs).")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobListResponse:
    """``jobType`` selects the table (``ai_course_generate`` → course jobs, ``image`` → media jobs that
    make images). Every filter applies: ``jobTable`` naming the other table lists nothing."""

    def work() -> JobListResponse:
        deps = deps_of(request)
        table = JOB_TYPE_TABLES[jobType] if jobType else (jobTable or "ai_course_jobs")
        if jobType and jobTable and jobTable != table:  # no job is of both
            return JobListResponse(jobs=[], count=0, requestId=request_id_of(request))
        if organizationId is not None:
            if not can_read(principal, organizationId):
                raise ApiError(404, "organization_not_found", f"organization {organizationId} not found")
            orgs: list[UUID | None] = [organizationId]
        elif principal.is_superadmin:
            orgs = [None]  # every organization
        else:
            orgs = list(principal.organizations)
        page = find_jobs(deps.pool, table, organizations=None if orgs == [None] else orgs, status=status,
                         course_id=courseId, media_type="image" if jobType == "image" else None, limit=limit)
        jobs = page.jobs
        return JobListResponse(jobs=[JobOut.of(j, deps.settings.dagster_ui_url) for j in jobs], count=len(jobs), requestId=request_id_of(request))

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
        job = find_job(deps, principal, body.jobId, body.jobTable)
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
                deps.pool, deps.store, body.courseId, principal_or_actor=principal, change_summary=body.summary
            )
        except PublishError as exc:
            issues = [i.model_dump() for i in exc.issues] if exc.issues else None
            raise ApiError(exc.status, exc.code, exc.message, issues=issues) from exc
        audit_log.info("publish course=%s version=%s by=%s", result.course_id, result.version, principal.rate_key)
        snapshot = published_version(deps.pool, result.course_id, result.version)
        return PublishResponse(
            courseId=result.course_id,
            version=result.version,
            snapshotId=snapshot.snapshot_id,
            contentVersion=result.version,
            publishedAt=snapshot.published_at,
            etag=result.etag,
            storagePath=result.storage_path,
            contentSha256=result.content_sha256,
            catalogVersion=result.catalog_version,
            warnings=[IssueOut(**i.model_dump()) for i in result.warnings],
            requestId=request_id_of(request),
        )

    return await run_in_threadpool(work)


@router.get(
    "/functions/v1/list-courses",
    response_model=CourseListResponse,
    summary="Catalog: courses of the caller's organizations and public courses, filtered",
    responses=_errors(*_READ_ERRORS),
)
async def list_courses_route(
    request: Request,
    principal: PrincipalDep,
    tag: Annotated[list[TagFilter] | None, Query(max_length=20, description="Every tag given must be on the course.")] = None,
    visibility: Annotated[Visibility | None, Query()] = None,
    subject: Annotated[Subject | None, Query(description="The course's subject, case-insensitive.")] = None,
    gradeBand: Annotated[GradeBand | None, Query()] = None,
    organizationId: Annotated[UUID | None, Query(description="Only this organization (must be visible).")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CourseListResponse:
    """An ``org`` course is listed only within its organization; a ``public`` one to every caller
    (catalog/listing.py)."""
    from ignite_dagster.catalog.listing import OrganizationNotVisible, list_courses

    def work() -> CourseListResponse:
        deps = deps_of(request)
        try:
            entries = list_courses(deps.pool, principal, tags=tag or [], visibility=visibility, subject=subject,
                                   grade_band=gradeBand, organization_id=organizationId, limit=limit)
        except OrganizationNotVisible as exc:
            raise ApiError(404, "organization_not_found", str(exc)) from exc
        courses = [CourseOut(courseId=e.course_id, organizationId=e.organization_id, title=e.title, subject=e.subject,
                             gradeBand=e.grade_band, visibility=e.visibility, tags=e.tags,
                             contentVersion=e.content_version, itemCount=e.item_count, storagePath=e.storage_path,
                             latestJobId=e.latest_job_id, updatedAt=e.updated_at) for e in entries]
        return CourseListResponse(courses=courses, count=len(courses), requestId=request_id_of(request))

    return await run_in_threadpool(work)


@router.post(
    "/functions/v1/request-course-media",
    status_code=202,
    response_model=CourseMediaResponse,
    summary="Queue images for named targets of an existing course",
    responses=_errors(*_WRITE_ERRORS, 429),
)
async def request_course_media(
    body: CourseMediaBody, request: Request, principal: Annotated[Principal, Depends(enqueue_principal)]
) -> CourseMediaResponse:
    """One media job per named target that has neither an image nor a live job; images already attached
    are left untouched. Another organization's course is a 404 (public or not); a viewer gets 403."""
    from ignite_dagster.media.targets import (
        CourseNotFound,
        UnknownTarget,
        course_owner,
        request_course_images,
    )

    def work() -> CourseMediaResponse:
        deps = deps_of(request)
        with deps.pool.connection() as conn:
            owner = course_owner(conn, body.courseId)
            if owner is None or not can_read(principal, owner):
                raise ApiError(404, "not_found", f"course {body.courseId} not found")
            if not can_write(principal, owner):
                raise ApiError(403, "forbidden", "requesting images needs the editor or org_admin role in the course's organization")
            if not deps.settings.images_configured:  # accepted means honoured: refuse what no provider can make
                raise ApiError(422, "model_not_configured", "targets: no image model is configured (the operator must "
                               "set IGNITE_IMAGE_MODEL and IGNITE_IMAGE_API_KEY or OPENAI_API_KEY)")
            try:
                result = request_course_images(
                    conn, deps.store, organization_id=owner, course_id=body.courseId, specs=body.targets,
                    style=body.style, created_by=principal.user_id if principal.kind == "user" else None,
                    requested_by=principal.audit_text(),
                )
            except CourseNotFound as exc:
                raise ApiError(404, "not_found", str(exc)) from exc
            except UnknownTarget as exc:
                raise ApiError(422, "invalid_request", f"targets: {exc}") from exc
        audit_log.info("course media course=%s jobs=%d by=%s", body.courseId, len(result.job_ids), principal.rate_key)
        return CourseMediaResponse(courseId=body.courseId, jobIds=result.job_ids, targets=result.targets,
                                   alreadyAttached=result.already_attached, alreadyQueued=result.already_queued,
                                   requestId=request_id_of(request))

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
        write_org(request, principal)  # costs money: only callers who may write somewhere
        try:
            from ignite_dagster.media.live import generate_live_image
        except ModuleNotFoundError as exc:
            if exc.name not in ("ignite_dagster.media", "ignite_dagster.media.live"):
                raise
            raise ApiError(503, "not_available", "live image generation is not available in this build") from exc
        settings = deps.settings
        if not settings.images_configured:
            raise ApiError(
                503, "not_available", "no image model is configured (the operator must set IGNITE_IMAGE_MODEL and "
                "IGNITE_IMAGE_API_KEY or OPENAI_API_KEY)"
            )
        size = body.image_size() or settings.image_size
        ratio = body.options.aspectRatio if body.options else None
        notes = []
        if ratio is not None and not _same_ratio(size, ratio):
            if body.image_size() is None:
                raise ApiError(422, "invalid_request", f"options.aspectRatio: {ratio} is not the ratio of the image size "
                               f"{size}; send a size with that ratio (options.size) or leave aspectRatio out")
            notes.append(f"options.aspectRatio {ratio} is not the ratio of options.size {size}: the size decides, "
                         "as in the original system")
        try:
            result = generate_live_image(settings, deps.store, body.prompt, style=body.image_style(), size=size,
                                         quality=body.image_quality())
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
        width, height = (int(n) for n in str(data.get("size") or size).split("x"))
        return MediaResponse(url=str(url), alt=body.prompt.strip(), mimeType=str(data.get("contentType")),
                             width=width, height=height, provider=data.get("provider"), path=str(path),
                             tempPath=str(path), aspectRatio=_reduced_ratio(width, height), notes=notes,
                             details=data, requestId=request_id_of(request))

    return await run_in_threadpool(work)


def _reduced_ratio(width: int, height: int) -> str:
    from math import gcd

    g = gcd(width, height)
    return f"{width // g}:{height // g}"


def _same_ratio(size: str, ratio: str) -> bool:
    """``"1792x1024"`` has the ratio ``"7:4"``, not ``"16:9"``: exact, no rounding."""
    width, height = (int(n) for n in size.split("x"))
    w, h = (int(n) for n in ratio.split(":"))
    return width * h == height * w


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
            deps.store.put(HEALTH_PROBE_KEY, b'{"ok": true}\n', content_type="application/json")
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