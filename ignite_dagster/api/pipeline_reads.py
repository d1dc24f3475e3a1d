"""The reads the original system's AI Course Generator and course editor make, with its parameters and
under its field names: ``get-course-job`` (one job and its events, polled every 2 s while a course is
generated), ``list-course-jobs`` ("Recent Courses", the jobs pages) and ``get-course`` (what the editor
loads).

Unlike the originals, which read with the service role, these stay inside the caller's organizations:
another organization's job or course is a 404 like a missing one. The SQL lives in the queue and
catalog layers (``queue/listing.py``, ``catalog/reading.py``); each route only maps parameters and
shapes the answer.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ignite_dagster.api.dependencies import PrincipalDep, deps_of, find_job
from ignite_dagster.api.errors import ApiError, ErrorResponse, request_id_of
from ignite_dagster.api.schemas import (
    COURSE_JOBS_PAGE_MAX,
    CourseEnvelope,
    CourseJobResponse,
    JobEventRecord,
    JobStatusName,
    ListCourseJobsBody,
    ListCourseJobsResponse,
    course_job_record,
)
from ignite_dagster.auth import Principal
from ignite_dagster.catalog.reading import CourseNotFound, read_course
from ignite_dagster.course.request import CourseId
from ignite_dagster.queue import CourseJob
from ignite_dagster.queue.listing import find_jobs
from ignite_dagster.storage.base import StorageError

router = APIRouter()

_READ_ERRORS = {
    400: "Malformed header (x-organization-id, x-user-id).",
    401: "Missing or invalid credentials.",
    404: "No such job or course visible to the caller.",
    422: "Invalid parameter; the message names it.",
    500: "Unexpected error; quote the requestId.",
    503: "The database or storage is unavailable.",
}
_ERRORS = {code: {"model": ErrorResponse, "description": text} for code, text in _READ_ERRORS.items()}


@router.get(
    "/functions/v1/get-course-job",
    response_model=CourseJobResponse,
    summary="One course job under its column names, with its events (the original get-course-job)",
    responses=_ERRORS,
)
async def get_course_job(
    request: Request,
    principal: PrincipalDep,
    id: Annotated[UUID | None, Query(description="The job id (the original's name).")] = None,
    jobId: Annotated[UUID | None, Query(description="The job id (the same as id).")] = None,
    includeEvents: Annotated[bool, Query(description="Include the job's events, oldest first.")] = False,
) -> CourseJobResponse:
    if id is not None and jobId is not None and id != jobId:
        raise ApiError(422, "invalid_request", "jobId disagrees with id: send one of them, or the same id in both")
    job_id = id or jobId
    if job_id is None:
        raise ApiError(422, "invalid_request", "id (or jobId) is required")

    def work() -> CourseJobResponse:
        deps = deps_of(request)
        job = find_job(deps, principal, job_id, "ai_course_jobs")
        assert isinstance(job, CourseJob)
        events = [JobEventRecord.of(e) for e in deps.queue.events(job.id)] if includeEvents else []
        return CourseJobResponse(job=course_job_record(job), events=events, requestId=request_id_of(request))

    return await run_in_threadpool(work)


def _visible_organizations(principal: Principal) -> list[UUID] | None:
    return None if principal.is_superadmin else list(principal.organizations)


def _list_course_jobs(request: Request, principal: Principal, filters: ListCourseJobsBody) -> ListCourseJobsResponse:
    deps = deps_of(request)
    page = find_jobs(
        deps.pool, "ai_course_jobs", organizations=_visible_organizations(principal), status=filters.status,
        job_id=filters.jobId, since=timedelta(hours=filters.sinceHours) if filters.sinceHours else None,
        subject_contains=filters.search, limit=filters.limit, offset=filters.offset,
    )
    return ListCourseJobsResponse(jobs=[course_job_record(j) for j in page.jobs], total=page.total,  # type: ignore[arg-type]
                                  limit=filters.limit, offset=filters.offset, requestId=request_id_of(request))


@router.get(
    "/functions/v1/list-course-jobs",
    response_model=ListCourseJobsResponse,
    summary="Course jobs of the caller's organizations, newest first, paged (the original list-course-jobs)",
    responses=_ERRORS,
)
async def list_course_jobs_get(
    request: Request,
    principal: PrincipalDep,
    status: Annotated[JobStatusName | None, Query()] = None,
    sinceHours: Annotated[float | None, Query(gt=0, le=24 * 3660, description="Created within this many hours.")] = None,
    limit: Annotated[int, Query(ge=1, le=COURSE_JOBS_PAGE_MAX)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    search: Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[^\x00]*$",
                                        description="Case-insensitive text in the subject.")] = None,
    jobId: Annotated[UUID | None, Query()] = None,
) -> ListCourseJobsResponse:
    filters = ListCourseJobsBody(status=status, sinceHours=sinceHours, limit=limit, offset=offset, search=search,
                                 jobId=jobId)
    return await run_in_threadpool(_list_course_jobs, request, principal, filters)


@router.post(
    "/functions/v1/list-course-jobs",
    response_model=ListCourseJobsResponse,
    summary="The same list, its filters in a JSON body",
    responses=_ERRORS,
)
async def list_course_jobs_post(
    request: Request, principal: PrincipalDep, body: ListCourseJobsBody | None = None
) -> ListCourseJobsResponse:
    return await run_in_threadpool(_list_course_jobs, request, principal, body or ListCourseJobsBody())


def _etag(body: bytes) -> str:
    return f'W/"{hashlib.sha1(body, usedforsecurity=False).hexdigest()}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison: ``W/"x"`` and ``"x"`` match; ``*`` matches any current representation."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in (c.strip() for c in if_none_match.split(",")):
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


_COURSE_RESPONSES = {304: {"description": "Not modified: If-None-Match holds the current ETag."}, **_ERRORS}


@router.head("/functions/v1/get-course", operation_id="head_course", response_model=CourseEnvelope,
             summary="The headers of get-course (ETag) without the body", responses=_COURSE_RESPONSES)
@router.get("/functions/v1/get-course", operation_id="get_course", response_model=CourseEnvelope,
            summary="The stored course as the editor loads it: {id, format: practice, content}, with an ETag",
            responses=_COURSE_RESPONSES)
async def get_course(
    request: Request,
    principal: PrincipalDep,
    courseId: Annotated[CourseId, Query(description="The course id.")],
) -> Response:
    """A course with visibility ``org`` is read only within its organization (404 elsewhere); a
    ``public`` one by every authenticated caller, as the catalog lists it. HEAD answers the headers only."""

    def work() -> Response:
        deps = deps_of(request)
        try:
            stored = read_course(deps.pool, deps.store, principal, courseId)
        except CourseNotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        except (StorageError, OSError) as exc:
            raise ApiError(503, "storage_unavailable", f"cannot read course {courseId}; retry later") from exc
        envelope = CourseEnvelope(id=courseId, content=stored.document)
        body = json.dumps(envelope.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False).encode()
        etag = _etag(body)
        # per caller (organization boundary): a shared cache must not keep it; every use revalidates
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            return Response(status_code=200, headers={**headers, "Content-Type": "application/json"})
        return Response(content=body, status_code=200, headers=headers, media_type="application/json")

    return await run_in_threadpool(work)
