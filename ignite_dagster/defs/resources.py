"""Dagster resources, one per external system the factory talks to, injected where they are used.

* ``QueueResource`` (key ``queue``): Postgres — a connection pool, the ``JobQueue`` over it and, in a run,
  the heartbeat ``Lease`` of the run's claims and the ``ProgressWriter`` of its fills (both write through
  the same pool).
* ``StorageResource`` (key ``storage``): the object store (local folder or S3) holding course.json and media.
* ``ModelResource`` (key ``model``): the OpenAI-compatible model — the run's shared background fills, None
  without a model (deterministic runs never import the SDK).

Sensors, ops, assets and checks name the resources they use as parameters (``def sensor(context, queue:
QueueResource)``); definitions.py binds them once for the code location, and tests bind their own
(``tests/support/code_location.py``).

Settings come from the environment (config.py), not from Dagster config, so the CLI, the API and the code
location read one source; a resource reads them when it is set up, never at import. Its only config is
what a test must point elsewhere (``QueueResource.database_url``).

Lifetimes: Dagster sets a sensor's resources up for every tick (``context.run`` is None there).
A tick must not pay for a new pool, and the code server lives for hours, so a tick's queue uses one pool
per database for the whole process (``tick_pool``). A run (one process per run with the default
launcher) owns its pool and closes it, and stops its lease, when the run ends.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from ignite_dagster.config import load_settings
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.lease import Lease
from ignite_dagster.queue.progress import ProgressWriter
from ignite_dagster.storage.base import ObjectStore

RUN_POOL_MAX = 4
TICK_POOL_MAX = 3

_tick_pools: dict[str, Any] = {}
_tick_pools_lock = threading.Lock()


def tick_pool(url: str):
    """The process's pool for sensor and schedule ticks on ``url``, opened (and the schema checked) once."""
    from ignite_dagster import db

    with _tick_pools_lock:
        pool = _tick_pools.get(url)
        if pool is None:
            db.check(url)
            pool = _tick_pools[url] = db.make_pool(url, max_size=TICK_POOL_MAX, min_size=1, name="ignite-sensors")
        return pool


def close_tick_pools() -> None:
    """Close every tick pool of this process (tests, whose databases come and go)."""
    with _tick_pools_lock:
        pools = list(_tick_pools.values())
        _tick_pools.clear()
    for pool in pools:
        pool.close()


class QueueResource(ConfigurableResource):
    """Postgres: the job queue, and the run's heartbeat lease of its claims."""

    database_url: Optional[str] = Field(  # noqa: UP045 - Dagster config types do not read PEP 604 unions
        default=None, description="Postgres URL of the queue. Unset: DATABASE_URL (dev: the embedded server).")

    _queue: JobQueue = PrivateAttr()
    _own_pool: Any = PrivateAttr(default=None)  # a run's pool, closed at teardown (a tick's is the process's)
    _lease: Lease | None = PrivateAttr(default=None)
    _progress: ProgressWriter | None = PrivateAttr(default=None)
    _heartbeat_seconds: float = PrivateAttr(default=30.0)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from ignite_dagster import db
        from ignite_dagster.local.embedded import resolve_database_url

        settings = load_settings()
        url = self.database_url or resolve_database_url(settings)
        if context.run is None:  # a sensor or schedule tick in the long-lived code server
            pool = tick_pool(url)
        else:
            db.check(url)
            pool = self._own_pool = db.make_pool(url, max_size=RUN_POOL_MAX, min_size=1, name="ignite-run")
        self._queue = JobQueue(pool, org_max_in_flight=settings.org_max_courses_in_flight)
        self._heartbeat_seconds = settings.heartbeat_seconds

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._progress is not None:
            self._progress.close()
        if self._lease is not None:
            self._lease.stop()
        if self._own_pool is not None:
            self._own_pool.close()

    @property
    def queue(self) -> JobQueue:
        return self._queue

    @property
    def lease(self) -> Lease:
        """The run's heartbeat of the claims its workers hold, started on first use (a tick starts none)."""
        if self._lease is None:
            self._lease = Lease(self._queue, self._heartbeat_seconds).start()
        return self._lease

    @property
    def progress(self) -> ProgressWriter:
        """The run's progress writer (``queue/progress.py``): its thread starts with the first refinement."""
        if self._progress is None:
            self._progress = ProgressWriter(self._queue)
        return self._progress


class StorageResource(ConfigurableResource):
    """The object store: course.json documents and the media library."""

    _store: ObjectStore = PrivateAttr()

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from ignite_dagster.storage import open_store

        self._store = open_store(load_settings())

    @property
    def store(self) -> ObjectStore:
        return self._store


class ModelResource(ConfigurableResource):
    """The OpenAI-compatible model: the run's background fills, one client for every course of the run."""

    _fills: Any = PrivateAttr(default=None)
    _configured: bool = PrivateAttr(default=False)
    _lock: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._configured = load_settings().model_configured
        self._lock = threading.Lock()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._fills is not None:
            self._fills.close()

    def fills(self, store: ObjectStore):
        """The run's shared background fills, built on first use (the model client caches and writes
        debug answers into ``store``); None without a model."""
        with self._lock:
            if self._fills is None and self._configured:
                from ignite_dagster.generation.llm import ModelWriter
                from ignite_dagster.generation.llm.background import BackgroundFills

                self._fills = BackgroundFills(ModelWriter(load_settings(), store))
            return self._fills


def course_worker(queue: QueueResource, storage: StorageResource, model: ModelResource, on_persisted=None):
    """The staged course worker over the run's resources (``on_persisted``: see ``CourseWorker``)."""
    from ignite_dagster.course_jobs.worker import CourseWorker

    store = storage.store
    # fills are handed over as a factory: the model SDK is imported only when a course is prefilled,
    # never before a claim's first heartbeat
    return CourseWorker(load_settings(), queue.queue, store, queue.lease, fills=lambda: model.fills(store),
                        progress=queue.progress, on_persisted=on_persisted)


def media_worker(queue: QueueResource, storage: StorageResource):
    """The staged media worker over the run's resources."""
    from ignite_dagster.media.worker import MediaWorker

    return MediaWorker(load_settings(), queue.queue, storage.store, queue.lease)
