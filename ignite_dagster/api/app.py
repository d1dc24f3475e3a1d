"""The ASGI application factory: everything the routes need is passed in, nothing is global.

Layout of the package, each importing only downwards: ``schemas`` (request/response models),
``dependencies`` (per-app services, auth, rate limits), ``routes`` and ``pipeline_reads`` (handlers; the
latter the reads of the original system's AI-pipeline pages and editor), ``app`` (this factory).

Tests and ``ignite api`` build the same app from a pool and a store they opened, so what the tests
exercise over real HTTP is exactly what production serves.
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool, PoolTimeout

from ignite_dagster.api.dependencies import AppDeps
from ignite_dagster.api.errors import (
    DEFAULT_MAX_BODY_BYTES,
    RequestContextMiddleware,
    error_body,
    install_error_handlers,
    log,
    request_id_of,
)
from ignite_dagster.api.pipeline_reads import router as pipeline_reads_router
from ignite_dagster.api.ratelimit import TokenBucketLimiter
from ignite_dagster.api.routes import router
from ignite_dagster.auth import Authenticator, check_auth_settings
from ignite_dagster.config import Settings
from ignite_dagster.queue import JobQueue
from ignite_dagster.storage.base import ObjectStore

API_VERSION = "1.0.0"
# For a configured origin, a preflight is allowed the request headers it asks for, as the original
# functions allowed them (they echoed Access-Control-Request-Headers): supabase-js adds apikey,
# x-client-info and, with its region option, x-region; tracing adds traceparent and baggage; retrying
# clients x-retry-count. Which headers mean anything is decided by the routes, not by the preflight.
# Origins not configured get no CORS allowance at all.
CORS_METHODS = ["GET", "POST", "OPTIONS", "HEAD"]
CORS_EXPOSED = ["X-Request-Id", "Retry-After", "ETag", "Cache-Control"]

DESCRIPTION = """
HTTP front of the ignite course factory. Routes mirror the original Supabase edge functions
(`/functions/v1/...`), so an existing frontend only changes its base URL.

**Auth** (every route but `/health`): either `Authorization: Bearer <JWT>` (signature, `exp`, `aud`
checked; roles from `user_roles`) or agent headers `x-agent-token` + `x-organization-id`
(+ optional `x-user-id`, kept as audit text only). Users who belong to several organizations name
the one a write acts in with `x-organization-id`.

**Errors**: real HTTP status codes with `{ok: false, error: {code, message}, message, requestId}`
(`message` repeats `error.message` for clients that read it at the top level).

**Bodies** are JSON whatever their Content-Type (supabase-js sends a string body as text/plain).
Every response carries `X-Request-Id`.
"""


def create_app(
    settings: Settings,
    pool: ConnectionPool,
    store: ObjectStore,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """Build the service. Refuses (ConfigError) an auth configuration that is unsafe or empty.

    ``cors_origins``: browser origins allowed to call the API (``["*"]`` for any). A frontend that
    called the Supabase edge functions from the browser needs this to switch base URL; None = no CORS.
    """
    check_auth_settings(settings)
    app = FastAPI(
        title="ignite-dagster API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.deps = AppDeps(
        settings=settings,
        pool=pool,
        store=store,
        queue=JobQueue(pool),
        authenticator=Authenticator(settings, pool),
        enqueue_limiter=TokenBucketLimiter(settings.enqueue_rate_per_minute),
        media_limiter=TokenBucketLimiter(settings.enqueue_rate_per_minute),
    )
    install_error_handlers(app)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # A lost or exhausted database is an outage the client can retry, not a bug: 503, not 500.
        log.error("database unavailable: %s", exc)
        body = error_body(503, "database_unavailable", "database unavailable; retry later", request_id_of(request))
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    app.include_router(router)
    app.include_router(pipeline_reads_router)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=max_body_bytes)
    if cors_origins:
        # Added last = outermost: preflights are answered before auth, and every response (413s from
        # the body limit included) carries the CORS headers a browser needs to read it.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=["*"],
            expose_headers=CORS_EXPOSED,
            max_age=600,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _tidy_security(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _tidy_security(schema: dict[str, Any]) -> None:
    """Say what the auth really is: a bearer token, OR the agent token together with its organization.

    FastAPI lists each security dependency as an alternative of its own; that would claim that
    ``x-organization-id`` alone authenticates.
    """
    schemes = schema.get("components", {}).get("securitySchemes", {})
    if not schemes:
        return
    bearer = [{"BearerJWT": []}] if "BearerJWT" in schemes else []
    agent = {name: [] for name in ("AgentToken", "AgentOrganization", "AgentUser") if name in schemes}
    agent.pop("AgentUser", None)  # optional audit text, not a credential
    requirement = bearer + ([agent] if agent else [])
    for path in schema.get("paths", {}).values():
        for op in path.values():
            if isinstance(op, dict) and "security" in op:
                op["security"] = requirement
