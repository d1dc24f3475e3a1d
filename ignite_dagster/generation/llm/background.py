"""Courses that run side by side: one event loop thread and one model client for every course of a
process, and one worker thread per course that finishes it as soon as its own fill is done.

Why: a Dagster run works its courses with the in-process executor, one step after another. If each
course's fill started only when its own step ran, ten courses would take ten fills' time; and if its
validation and persist waited for their steps, every course would wait for the slowest fill of its run.
The worker hands each course's ``finish`` (fill → validate → repair → persist) to ``run`` as soon as its
skeleton is built: a thread of this service runs it, its fill (``submit``) goes to the shared loop and
overlaps every other course's calls, and the course is persisted the moment its own fill and checks are
done. The Dagster step of a course only collects the outcome. All courses share one
``StructuredClient``, so the provider sees at most one concurrency limit (capped by the slots the server
reports), however many courses are in flight.

The service is process-local and cheap when unused (the threads start on first use). ``close`` stops the
loop; pending fills are cancelled and their futures fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ignite_dagster.course.request import CourseRequest
    from ignite_dagster.course.skeleton import Skeleton
    from ignite_dagster.generation.llm.client import StructuredClient
    from ignite_dagster.generation.llm.writer import LLMFillResult, ModelWriter

log = logging.getLogger(__name__)


class BackgroundFills:
    def __init__(self, filler: ModelWriter) -> None:
        self.filler = filler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: StructuredClient | None = None
        self._client_lock: asyncio.Lock | None = None
        self._lock = threading.Lock()
        self._courses: concurrent.futures.ThreadPoolExecutor | None = None

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

    async def _fill(self, skeleton: Skeleton, request: CourseRequest, on_progress: Any, use_cache: bool,
                    progress_on_loop: bool) -> LLMFillResult:
        client = await self._shared_client()
        return await self.filler.fill_with(client, skeleton, request, on_progress=on_progress, use_cache=use_cache,
                                           progress_on_loop=progress_on_loop)

    def submit(self, skeleton: Skeleton, request: CourseRequest, *, on_progress: Any = None,
               use_cache: bool = True, progress_on_loop: bool = False) -> concurrent.futures.Future[Any]:
        """Start filling now; the future holds the LLMFillResult or the coded GenerationFailed
        (``progress_on_loop``: see ``ModelWriter.fill_with``)."""
        return asyncio.run_coroutine_threadsafe(self._fill(skeleton, request, on_progress, use_cache, progress_on_loop),
                                                self._ensure_loop())

    def run(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run one course's continuation (``CourseWorker.finish``) in a thread of its own, now.

        A thread per course (not a small pool): each spends most of its time waiting for its fill, and
        one waiting behind another would be the very head-of-line wait this service exists to avoid."""
        with self._lock:
            if self._courses is None:
                self._courses = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="ignite-course")
            return self._courses.submit(fn, *args)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            courses, self._courses = self._courses, None
        if courses is not None:
            courses.shutdown(wait=True)  # the run collected every course before closing; nothing waits here
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
