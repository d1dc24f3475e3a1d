"""Per-caller token buckets for the expensive routes (enqueue, live media).

In memory and per process on purpose: the limit protects the queue and the model budget from one
runaway client, it is not billing. With several API processes each enforces its own share; the
database stays the source of truth for jobs either way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """``rate_per_minute`` tokens refill continuously; a caller may burst up to ``burst`` (default: one
    minute's worth). ``acquire`` returns None when allowed, else the seconds until a token is back."""

    def __init__(
        self,
        rate_per_minute: int,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ):
        if rate_per_minute < 1:
            raise ValueError(f"rate_per_minute must be >= 1, got {rate_per_minute}")
        self.rate_per_second = rate_per_minute / 60.0
        self.capacity = float(burst if burst is not None else rate_per_minute)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_keys:
                    self._prune(now)
                bucket = self._buckets[key] = _Bucket(self.capacity, now)
            else:
                bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate_per_second)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / self.rate_per_second

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """Retry-After is whole seconds; round up so a client that obeys it is never refused again."""
        return str(max(1, math.ceil(seconds)))

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely: they hold no information (bounded memory)."""
        full = [
            k for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate_per_second >= self.capacity
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:  # still full of active callers: drop the oldest
            for k in sorted(self._buckets, key=lambda k: self._buckets[k].updated)[: self._max_keys // 10]:
                del self._buckets[k]
