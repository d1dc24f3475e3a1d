"""Fills that run side by side: one event loop thread and one model client for every course of a process.

Why: a Dagster run works its courses with the in-process executor, one step after another. If each
course's fill started only when its own ``fill`` step ran, ten courses would take ten fills' time. The
worker hands a course to ``BackgroundFills.submit`` as soon as its skeleton is built; the fill runs here,
overlapping every other course's calls, and the ``fill`` step only waits for its own result. All courses
share one ``StructuredClient``, so the provider sees at most one concurrency limit (capped by the slots
the server reports), however many courses are in flight.

The service is process-local and cheap when unused (the thread starts on the first submit). ``close``
stops the loop; pending fills are cancelled and their futures fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ignite_dagster.course.request import CourseRequest
    from ignite_dagster.course.skeleton import Skeleton
    from ignite_dagster.generation.llm.filler import LLMFiller, LLMFillResult
    from ignite_dagster.generation.llm.provider import StructuredClient

log = logging.getLogger(__name__)


class BackgroundFills:
    def __init__(self, filler: LLMFiller) -> None:
        self.filler = filler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: StructuredClient | None = None
        self._client_lock: asyncio.Lock | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="ignite-fills", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _shared_client(self) -> StructuredClient:
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        async with self._client_lock:
            if self._client is None:
                client = self.filler.client(self.filler.config())
                self._client = await client.__aenter__()
            return self._client

    async def _fill(self, skeleton: Skeleton, request: CourseRequest) -> LLMFillResult:
        client = await self._shared_client()
        return await self.filler.fill_with(client, skeleton, request)

    def submit(self, skeleton: Skeleton, request: CourseRequest) -> concurrent.futures.Future[Any]:
        """Start filling now; the future holds the LLMFillResult or the coded GenerationFailed."""
        return asyncio.run_coroutine_threadsafe(self._fill(skeleton, request), self._ensure_loop())

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return

        async def shutdown() -> None:
            if self._client is not None:
                await self._client.__aexit__(None, None, None)
                self._client = None

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        except Exception as exc:  # noqa: BLE001 - closing must not fail a run
            log.warning("closing the shared model client failed: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
