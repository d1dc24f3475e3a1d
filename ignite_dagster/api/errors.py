"""One error envelope for every failure, and the request id that ties a response to the logs.

Clients of the original edge functions read ``{ok: false, error: {code, message}, requestId}``, and some
read a top-level ``message`` (the original frontend's agent-mode client shows ``body.message ||
body.error``, which for the nested object alone is "[object Object]"), so every error carries both;
every error this service produces has that shape — our own errors, FastAPI's validation errors (422), unknown
routes (404), wrong methods (405), oversized bodies (413) and unexpected crashes (500) — so a client
needs exactly one error path. The ``X-Request-Id`` header is on every response, echoed when the caller
sent a sane one so their traces and ours line up.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("ignite_dagster.api")

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# The limit must sit above the largest *valid* request, or the service would refuse (413) what its
# published schema accepts. A payload may carry notes (20 000 characters), a study text (50 000) and a
# subject (200); a client that JSON-escapes non-ASCII (Python's default) spends up to 12 bytes on one
# character outside the BMP (a surrogate pair, two \uXXXX escapes): ~845 KB for a maximal request.
# tests/integration/test_api_routes.py sends that request and expects 202.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class FieldError(BaseModel):
    field: str
    message: str


class IssueOut(BaseModel):
    """A course validation issue (course-format.md): the codes are a contract."""

    code: str
    severity: str
    message: str
    itemId: int | None = None
    field: str | None = None


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_request, not_found, rate_limited.")
    message: str = Field(description="Human-readable explanation; names the offending field where there is one.")
    fields: list[FieldError] | None = Field(default=None, description="Per-field problems of a 422.")
    issues: list[IssueOut] | None = Field(default=None, description="Course validation issues (publish).")


class ErrorResponse(BaseModel):
    ok: bool = Field(False, description="Always false for errors.")
    error: ErrorDetail
    message: str = Field(description="The same as error.message, for clients that read a top-level message.")
    requestId: str


class ApiError(Exception):
    """Raise anywhere in a route: becomes the envelope with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        issues: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}
        self.issues = issues


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid or str(uuid.uuid4())


def error_body(
    status: int,
    code: str | None,
    message: str,
    request_id: str,
    *,
    fields: list[dict[str, str]] | None = None,
    issues: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code or _STATUS_CODES.get(status, "error"), "message": message}
    if fields:
        error["fields"] = fields
    if issues is not None:
        error["issues"] = issues
    return {"ok": False, "error": error, "message": message, "requestId": request_id, **(extra or {})}


def _field_name(loc: tuple[Any, ...]) -> str:
    """``("body", "payload", "course_id")`` → ``payload.course_id``; ``("query", "jobId")`` → ``jobId``."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "header", "path", "cookie") else list(loc)
    # a grade is a string or a number (a tagged union): pydantic adds the member's tag to the location,
    # which names no field the client sent ("payload.grade.string")
    if len(parts) >= 2 and parts[-2] == "grade" and parts[-1] in ("string", "integer"):
        parts = parts[:-1]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out or (str(loc[0]) if loc else "request")


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    fields: list[dict[str, str]] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            name, msg = "body", f"request body is not valid JSON ({err.get('ctx', {}).get('error', msg)})"
        elif err.get("type") == "missing" and loc == ("body",):
            name, msg = "body", "a JSON request body is required"
        elif loc == ("body",) and err.get("type") in ("model_attributes_type", "dict_type"):
            name, msg = "body", "the request body must be a JSON object (Content-Type: application/json)"
        else:
            name = _field_name(loc)
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
        fields.append({"field": name, "message": msg})
    shown = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    if len(fields) > 5:
        shown += f"; and {len(fields) - 5} more"
    return shown or "invalid request", fields


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        body = error_body(exc.status, exc.code, exc.message, request_id_of(request), issues=exc.issues, extra=exc.extra)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, fields = _validation_message(list(exc.errors()))
        body = error_body(422, "invalid_request", message, request_id_of(request), fields=fields)
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            message = "the request body could not be parsed (send UTF-8 JSON with Content-Type: application/json)"
        else:
            message = str(exc.detail)
        body = error_body(exc.status_code, None, message, request_id_of(request))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _read_body_as_json(scope: Scope, content_type: str | None) -> None:
    """Every body this service takes is JSON; read it as JSON whatever Content-Type it came with.

    The original functions parsed their bodies with ``req.json()`` regardless of the header, and
    clients rely on it: ``@supabase/supabase-js`` sends a string body as ``text/plain``, plain
    ``fetch`` with a string body as ``text/plain;charset=UTF-8``. A body that is not JSON is still a
    422 saying so."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return
    raw = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
    raw.append((b"content-type", b"application/json"))
    scope["headers"] = raw


class RequestContextMiddleware:
    """Pure ASGI: request id on every response, body size limit, last-resort 500 envelope.

    The body is buffered (it is at most ``max_body_bytes``) so an oversized one is refused with 413
    before any route or auth code runs, whether or not the client announced a Content-Length.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._reply(send_with_id, 400, "bad_request", "invalid Content-Length header", request_id)
                return
            if int(declared) > self.max_body_bytes:
                await self._too_large(send_with_id, request_id)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._too_large(send_with_id, request_id)
                return
            if not message.get("more_body", False):
                break
        if body:
            _read_body_as_json(scope, headers.get("content-type"))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"), request_id)
            if started:
                raise
            await self._reply(send_with_id, 500, "internal_error", "internal error; quote the request id", request_id)

    async def _too_large(self, send: Send, request_id: str) -> None:
        await self._reply(
            send, 413, "payload_too_large", f"request body exceeds {self.max_body_bytes} bytes", request_id
        )

    @staticmethod
    async def _reply(send: Send, status: int, code: str, message: str, request_id: str) -> None:
        payload = json.dumps(error_body(status, code, message, request_id)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
