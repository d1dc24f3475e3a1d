"""What a request handler depends on: the per-app services, the caller's identity and rate limits.

``create_app`` puts one :class:`AppDeps` on ``app.state.deps``; the routes reach it through
:func:`deps_of` and authenticate through the FastAPI dependencies below. Nothing here imports the routes
or the app factory, so ``app → routes → dependencies`` has no cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from psycopg_pool import ConnectionPool

from ignite_dagster.api.errors import ApiError
from ignite_dagster.api.ratelimit import TokenBucketLimiter
from ignite_dagster.auth import (
    Authenticator,
    AuthError,
    Principal,
    can_read,
    parse_organization_header,
    resolve_write_organization,
)
from ignite_dagster.config import Settings
from ignite_dagster.queue import CourseJob, JobQueue, MediaJob
from ignite_dagster.storage.base import ObjectStore


@dataclass
class AppDeps:
    """What the routes use, kept on ``app.state.deps``."""

    settings: Settings
    pool: ConnectionPool
    store: ObjectStore
    queue: JobQueue
    authenticator: Authenticator
    enqueue_limiter: TokenBucketLimiter
    media_limiter: TokenBucketLimiter


def deps_of(request: Request) -> AppDeps:
    return request.app.state.deps


# -- auth ----------------------------------------------------------------------------------------------
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


# -- rate limits ---------------------------------------------------------------------------------------


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


# -- organization of a write ---------------------------------------------------------------------------


def write_org(request: Request, principal: Principal) -> UUID:
    """The organization a write acts in (header, or the caller's only organization)."""
    try:
        requested = parse_organization_header(request.headers.get("x-organization-id"))
        return resolve_write_organization(principal, requested, deps_of(request).pool)
    except AuthError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc


# -- reads ---------------------------------------------------------------------------------------------


def find_job(
    deps: AppDeps, principal: Principal, job_id: UUID, table: str | None
) -> CourseJob | MediaJob:
    """The job if the caller may read it; 404 otherwise (also for another organization's job).

    When the caller can see exactly one organization the query itself is scoped to it, so the
    boundary holds in SQL and not only in the check below.
    """
    scope = principal.organizations[0] if (not principal.is_superadmin and len(principal.roles) == 1) else None
    tables: tuple[str, ...] = (table,) if table else ("ai_course_jobs", "ai_media_jobs")
    for name in tables:
        job = deps.queue.get(job_id, name, organization_id=scope)
        if job is not None and can_read(principal, job.organization_id):
            return job
    raise ApiError(404, "not_found", f"job {job_id} not found")
