"""A course's fill deadline, which counts from its first call and moves while its streams send tokens."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

R = TypeVar("R")


class Deadline:
    """A course's fill (or repair round) deadline: ``seconds`` from its first call, extended while its
    streams keep sending tokens (never earlier than ``grace`` after the last token).

    Before the first call it has not started: a fill queued behind other courses' calls (the client's
    concurrency, the server's slots) is not timed while it waits. ``at()`` is the current expiry
    (monotonic), which the shared provider budget uses to bound its wait."""

    def __init__(self, seconds: float, grace: float) -> None:
        self.seconds = seconds
        self.grace = grace
        self.started: float | None = None
        self.last_token: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def touch(self) -> None:
        self.last_token = time.monotonic()

    def at(self) -> float:
        if self.started is None:
            return time.monotonic() + self.seconds
        end = self.started + self.seconds
        return max(end, self.last_token + self.grace) if self.last_token is not None else end

    def remaining(self) -> float:
        return self.at() - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


async def within(coro: Coroutine[Any, Any, R], deadline: Deadline | None) -> R:
    """Await ``coro`` until the (moving) deadline passes; then cancel it and raise TimeoutError."""
    if deadline is None:
        return await coro
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline.remaining()))
            if done:
                return task.result()
            if deadline.expired():
                raise TimeoutError("fill deadline passed")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
