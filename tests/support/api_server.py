"""The real API under a real uvicorn on loopback, in a thread, for tests.

A socket is bound to 127.0.0.1:0 first and handed to uvicorn, so the port is known before the server
starts and two tests never race for one. ``stop`` asks uvicorn to exit and joins the thread.
"""

from __future__ import annotations

import base64
import functools
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import psycopg
import uvicorn
from fastapi import FastAPI

from ignite_dagster import db
from ignite_dagster.api.app import create_app
from ignite_dagster.config import Settings
from ignite_dagster.queue import JobQueue, NewCourseJob
from ignite_dagster.storage.base import ObjectStore
from ignite_dagster.storage.local import LocalObjectStore


class ApiServer:
    def __init__(self, app: FastAPI):
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout: float = 10.0) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError("uvicorn did not stop")


@contextmanager
def running_api(
    settings: Settings, db_url: str, store: ObjectStore | None = None, *, storage_root: Path | None = None, **app_kwargs
) -> Iterator[ApiServer]:
    """Pool + store + app + uvicorn, all real; everything is closed on exit."""
    if store is None:
        assert storage_root is not None, "pass a store or a storage_root"
        store = LocalObjectStore(storage_root, None)
    pool = db.make_pool(db_url, max_size=8, name="ignite-test-api")
    server = ApiServer(create_app(settings, pool, store, **app_kwargs)).start()
    try:
        yield server
    finally:
        server.stop()
        pool.close()


# -- shared test world ---------------------------------------------------------------------------------
# Used by the API and publishing tests: real rows, real files, real tokens.
JWT_SECRET = "test-hs256-secret-with-enough-bytes-0123456789"
AUDIENCE = "authenticated"
AGENT_TOKEN = "agent-token-for-tests-6d1f0c"


def api_settings(**overrides) -> Settings:
    # a text model is configured by default, as in a deployment that serves the model path: requests with
    # notes or without a pack are then accepted (tests of refusals pass openai_api_key=None)
    values = dict(agent_token=AGENT_TOKEN, jwt_secret=JWT_SECRET, jwt_audience=AUDIENCE, enqueue_rate_per_minute=100_000,
                  openai_api_key="test-key", text_model="test-model")
    values.update(overrides)
    return Settings(**values)


def hs256_token(sub: uuid.UUID | str, *, secret: str = JWT_SECRET, aud: str | None = AUDIENCE, exp_in: int = 300, **claims) -> str:
    payload = {"sub": str(sub), "exp": int(time.time()) + exp_in, "iat": int(time.time()), **claims}
    if aud is not None:
        payload["aud"] = aud
    return jwt.encode(payload, secret, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(sub: uuid.UUID | str, *, alg: str = "none", exp_in: int = 300) -> str:
    """A token with ``alg: none`` (or any header alg) and an empty signature, built by hand."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": str(sub), "aud": AUDIENCE, "exp": int(time.time()) + exp_in}).encode())
    return f"{header}.{body}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def agent_headers(org: uuid.UUID | str, user: str | None = "agent-user-1", token: str = AGENT_TOKEN) -> dict[str, str]:
    headers = {"x-agent-token": token, "x-organization-id": str(org)}
    if user is not None:
        headers["x-user-id"] = user
    return headers


@functools.lru_cache(maxsize=1)
def _generated_course() -> dict:
    """One valid course from the deterministic generator (cached: the generator is deterministic)."""
    from tests.support.courses import pack_course

    return pack_course({"course_id": "template-course", "subject": "addition", "grade": "3", "items_per_group": 4})


def valid_course_doc(course_id: str) -> dict:
    doc = json.loads(json.dumps(_generated_course()))
    doc["id"] = course_id
    return doc


def seed_course(db_url: str, store: ObjectStore, course_id: str, org: uuid.UUID, doc: dict | None = None) -> None:
    """course.json in storage plus its course_metadata row (normally the Dagster persist step's job)."""
    doc = doc if doc is not None else valid_course_doc(course_id)
    store.put(f"courses/{course_id}/course.json", json.dumps(doc).encode(), content_type="application/json")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO course_metadata (id, organization_id, title, subject, grade_band, item_count, storage_path) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (course_id, org, doc.get("title", course_id), doc.get("subject"), doc.get("gradeBand"),
             len(doc.get("items") or []), f"courses/{course_id}/course.json"),
        )


def add_org(db_url: str, name: str) -> uuid.UUID:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("INSERT INTO organizations (name) VALUES (%s) RETURNING id", (name,)).fetchone()[0]


def add_user(db_url: str, *roles: tuple[uuid.UUID | None, str]) -> uuid.UUID:
    user = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        for org, role in roles:
            conn.execute("INSERT INTO user_roles (user_id, organization_id, role) VALUES (%s, %s, %s)", (user, org, role))
    return user


def dead_letter_job(db_url: str, org: uuid.UUID, course_id: str) -> uuid.UUID:
    """A job in ``dead_letter`` (so a requeue, if wrongly allowed, would visibly change it)."""
    queue = JobQueue(db_url)
    job = queue.enqueue_course(NewCourseJob(course_id=course_id, subject="addition", grade="3"), organization_id=org).job
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE ai_course_jobs SET status = 'dead_letter', error = 'boom', completed_at = now() WHERE id = %s",
            (job.id,),
        )
    return job.id


@dataclass
class World:
    db_url: str
    root: Path
    store: LocalObjectStore
    org_a: uuid.UUID
    org_b: uuid.UUID
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    job_a: uuid.UUID | None = None
    job_b: uuid.UUID | None = None
    course_a: str = "course-a"
    course_b: str = "course-b"

    def token(self, who: str, **kwargs) -> dict[str, str]:
        return bearer(hs256_token(self.users[who], **kwargs))


def build_world(db_url: str, root: Path) -> World:
    store = LocalObjectStore(root, None)
    org_a, org_b = add_org(db_url, "Org A"), add_org(db_url, "Org B")
    w = World(db_url=db_url, root=root, store=store, org_a=org_a, org_b=org_b)
    w.users = {
        "editor_a": add_user(db_url, (org_a, "editor")),
        "admin_a": add_user(db_url, (org_a, "org_admin")),
        "viewer_a": add_user(db_url, (org_a, "viewer")),
        "editor_b": add_user(db_url, (org_b, "editor")),
        "multi": add_user(db_url, (org_a, "editor"), (org_b, "editor")),
        "superadmin": add_user(db_url, (None, "superadmin")),
        "nobody": add_user(db_url),
    }
    w.job_a = dead_letter_job(db_url, org_a, w.course_a)
    w.job_b = dead_letter_job(db_url, org_b, w.course_b)
    seed_course(db_url, store, w.course_a, org_a)
    seed_course(db_url, store, w.course_b, org_b)
    return w


def snapshot(db_url: str, root: Path) -> dict:
    """Everything a request could have written: row counts/states and every stored file."""
    with psycopg.connect(db_url) as conn:
        state = {
            "jobs": conn.execute("SELECT id, status, attempt, retry_count FROM ai_course_jobs ORDER BY id").fetchall(),
            "media_jobs": conn.execute("SELECT count(*) FROM ai_media_jobs").fetchone()[0],
            "events": conn.execute("SELECT count(*) FROM job_events").fetchone()[0],
            "metadata": conn.execute("SELECT id, content_version, etag FROM course_metadata ORDER BY id").fetchall(),
            "versions": conn.execute("SELECT count(*) FROM course_versions").fetchone()[0],
            "catalog": conn.execute("SELECT count(*) FROM catalog_updates").fetchone()[0],
        }
    files = sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and ".ignite" not in p.parts and "health" not in p.parts
    )
    state["files"] = files
    return state
