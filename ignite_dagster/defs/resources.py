"""Dagster resources wrapping the domain services.

Settings come from the environment (config.py), not from Dagster config, so the CLI, the API and the
Dagster code location read one source; the resource only owns lifetimes: a small connection pool, the
object store and the heartbeat thread of the run.
"""

from __future__ import annotations

from functools import lru_cache

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from ignite_dagster.config import Settings, load_settings
from ignite_dagster.queue import JobQueue
from ignite_dagster.queue.lease import Lease
from ignite_dagster.storage.base import ObjectStore


@lru_cache(maxsize=1)
def code_location_services() -> tuple[Settings, JobQueue, ObjectStore]:
    """Long-lived services for sensors and schedules (evaluated in the code server process).

    Each sensor tick would otherwise pay for a new pool; the code server lives for hours."""
    from ignite_dagster import db
    from ignite_dagster.local.embedded import resolve_database_url
    from ignite_dagster.storage import open_store

    settings = load_settings()
    url = resolve_database_url(settings)
    db.check(url)
    pool = db.make_pool(url, max_size=3, min_size=1, name="ignite-sensors")
    return settings, JobQueue(pool, org_max_in_flight=settings.org_max_courses_in_flight), open_store(settings)


class FactoryResource(ConfigurableResource):
    """Queue, storage and the run's heartbeat lease."""

    _settings: Settings = PrivateAttr()
    _queue: JobQueue = PrivateAttr()
    _store: ObjectStore = PrivateAttr()
    _lease: Lease = PrivateAttr()
    _pool: object = PrivateAttr(default=None)
    _fills: object = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from ignite_dagster import db
        from ignite_dagster.local.embedded import resolve_database_url
        from ignite_dagster.storage import open_store

        self._settings = load_settings()
        url = resolve_database_url(self._settings)
        db.check(url)
        self._pool = db.make_pool(url, max_size=4, min_size=1, name="ignite-run")
        self._queue = JobQueue(self._pool, org_max_in_flight=self._settings.org_max_courses_in_flight)
        self._store = open_store(self._settings)
        self._lease = Lease(self._queue, self._settings.heartbeat_seconds).start()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._fills is not None:
            self._fills.close()
        self._lease.stop()
        if self._pool is not None:
            self._pool.close()

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def queue(self) -> JobQueue:
        return self._queue

    @property
    def store(self) -> ObjectStore:
        return self._store

    @property
    def lease(self) -> Lease:
        return self._lease

    def fills(self):
        """The run's shared background fills (one model client for every course of the run), built on
        first use; None without a model (deterministic runs never import the SDK)."""
        if self._fills is None and self._settings.model_configured:
            from ignite_dagster.generation.llm import ModelWriter
            from ignite_dagster.generation.llm.background import BackgroundFills

            self._fills = BackgroundFills(ModelWriter(self._settings, self._store))
        return self._fills

    def worker(self):
        from ignite_dagster.course_jobs.worker import CourseWorker

        # fills are handed over as a factory: the model SDK is imported only when a course is prefilled,
        # never before a claim's first heartbeat
        return CourseWorker(self._settings, self._queue, self._store, self._lease, fills=self.fills)
