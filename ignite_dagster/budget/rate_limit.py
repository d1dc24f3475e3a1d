"""The budget one provider endpoint + model shares across every run, process and daemon.

Decisions, and why:

* **Postgres, one short transaction per call.** ``budget_acquire`` (sql/007) locks the budget's row
  FOR UPDATE, counts the grants of the sliding window and the leases in flight, and either inserts a
  grant or answers how long to wait. Every process that calls the provider already talks to this
  database, so no new service (Redis) has to run, and an embedded pgserver on a laptop behaves exactly
  as production does.
* **A sliding window, not a token bucket.** A bucket of capacity RPM refilling RPM/min lets up to 2×RPM
  through in one minute; the provider counts requests over the last minute. The window here is the
  provider's minute plus ``SAFETY_SECONDS``: a grant reaches the provider a little after it is made,
  and requests granted a full window apart must still be a full window apart when they arrive.
* **Tokens are unknown before the call**: a call reserves ``estimate_tokens`` (the output budget plus
  the prompt's characters / 4, an upper bound for English and JSON), and ``release`` replaces the
  reservation with the tokens the provider reported. The window therefore never counts fewer tokens
  than the provider does; a reservation whose call died expires with its lease.
* **In flight is a lease**: a grant is in flight until released or until ``lease_seconds`` pass (the
  process died mid-call), so a crash never leaks capacity for longer than one lease.
* **A 429 pauses the whole budget** (``pause``): ``paused_until`` is on the shared row, so every
  process waits out the provider's Retry-After instead of each call discovering it.

The calls are blocking (psycopg); the async client runs them in a worker thread (``acquire_async``),
so one budget works from any event loop, and a small pool per database URL serves a whole process.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from ignite_dagster.db import make_pool

WINDOW_SECONDS = 60.0
SAFETY_SECONDS = 1.0
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class BudgetLimits:
    """Limits of one budget; None = not limited on that axis."""

    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"budget limit {name} must be positive, got {value}")

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_in_flight))


def budget_key(kind: str, base_url: str | None, model: str) -> str:
    """``text:<endpoint>|<model>``: the provider limits per endpoint (account) and model."""
    return f"{kind}:{(base_url or 'https://api.openai.com/v1').rstrip('/')}|{model}"


def estimate_tokens(max_output_tokens: int, *payload: Any) -> int:
    """Upper-bound reservation for one call: its output budget plus the request's characters / 4."""
    chars = sum(len(p) if isinstance(p, str) else len(json.dumps(p, separators=(",", ":"), default=str))
                for p in payload)
    return int(max_output_tokens) + chars // CHARS_PER_TOKEN + 1


@dataclass(frozen=True)
class Grant:
    """One granted request: release it with the tokens the provider reported."""

    id: int
    tokens: int
    waited_seconds: float


class BudgetWaitTooLong(Exception):
    """The budget cannot grant before the caller's deadline (or a pause outlasts what it accepts)."""

    def __init__(self, key: str, wait: float, reason: str):
        super().__init__(f"budget {key}: {reason} (would wait {wait:.1f}s)")
        self.key = key
        self.wait = wait


_POOLS: dict[str, ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(url: str) -> ConnectionPool:
    """One small pool per database URL and process: budget calls are short and never held open."""
    with _POOLS_LOCK:
        pool = _POOLS.get(url)
        if pool is None:
            pool = _POOLS[url] = make_pool(url, max_size=4, min_size=1, name="ignite-budget")
        return pool


def close_shared_pools() -> None:
    """Close every pool ``shared_pool`` opened (tests dropping their databases; process shutdown)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


class ProviderBudget:
    """A budget row in Postgres, shared by every process that uses the same key.

    ``connection`` is a context-manager factory of autocommit connections (a pool's ``connection``);
    ``sleep`` is injectable for tests of the wait logic.
    """

    def __init__(
        self,
        key: str,
        limits: BudgetLimits,
        connection: Callable[[], Any],
        *,
        lease_seconds: float = 300.0,
        window_seconds: float = WINDOW_SECONDS + SAFETY_SECONDS,
        holder: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self.limits = limits
        self._connection = connection
        self.lease_seconds = lease_seconds
        self.window_seconds = window_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._sleep = sleep
        self.waits = 0  # how many times this process had to wait (telemetry)

    @classmethod
    def for_url(cls, url: str, key: str, limits: BudgetLimits, **kw: Any) -> ProviderBudget:
        return cls(key, limits, shared_pool(url).connection, **kw)

    # -- one transaction each -----------------------------------------------------------------------
    def try_acquire(self, tokens: int) -> tuple[int | None, float]:
        """(grant id, 0) or (None, seconds to wait before asking again)."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT * FROM budget_acquire(%s, %s, %s, %s, %s, %s, %s, %s)",
                (self.key, self.limits.rpm, self.limits.tpm, self.limits.max_in_flight, int(tokens),
                 self.lease_seconds, self.holder, self.window_seconds),
            ).fetchone()
        values = list(row.values()) if isinstance(row, dict) else list(row)
        return values[0], float(values[1] or 0.0)

    def release(self, grant: Grant | int, tokens: int | None) -> None:
        """End the lease; ``tokens`` is what the provider reported (None: keep the reservation)."""
        grant_id = grant.id if isinstance(grant, Grant) else grant
        with self._connection() as conn:
            conn.execute("SELECT budget_release(%s, %s)", (grant_id, tokens))

    def pause(self, seconds: float, reason: str | None = None) -> None:
        """Every process stops sending on this budget for ``seconds`` (a 429's Retry-After)."""
        with self._connection() as conn:
            conn.execute("SELECT budget_pause(%s, %s, %s)", (self.key, max(0.0, seconds), reason))

    # -- waiting ------------------------------------------------------------------------------------
    def acquire(self, tokens: int, *, deadline: float | None = None) -> Grant:
        """Wait until the budget grants one request of ``tokens``; ``deadline`` is monotonic."""
        started = time.monotonic()
        while True:
            grant_id, wait = self.try_acquire(tokens)
            if grant_id is not None:
                return Grant(grant_id, int(tokens), time.monotonic() - started)
            self.waits += 1
            if deadline is not None and time.monotonic() + wait >= deadline:
                raise BudgetWaitTooLong(self.key, wait, "no capacity before the deadline")
            self._sleep(wait)

    async def acquire_async(self, tokens: int, *, deadline: float | None = None,
                            sleep: Callable[[float], Any] | None = None) -> Grant:
        """``acquire`` for an event loop: each transaction runs in a thread, waits are ``asyncio.sleep``."""
        started = time.monotonic()
        nap = sleep or asyncio.sleep
        while True:
            grant_id, wait = await asyncio.to_thread(self.try_acquire, tokens)
            if grant_id is not None:
                return Grant(grant_id, int(tokens), time.monotonic() - started)
            self.waits += 1
            if deadline is not None and time.monotonic() + wait >= deadline:
                raise BudgetWaitTooLong(self.key, wait, "no capacity before the deadline")
            await nap(wait)

    async def release_async(self, grant: Grant, tokens: int | None) -> None:
        await asyncio.to_thread(self.release, grant, tokens)

    async def pause_async(self, seconds: float, reason: str | None = None) -> None:
        await asyncio.to_thread(self.pause, seconds, reason)


def reported_tokens(usage: Any) -> int | None:
    """Total tokens of an OpenAI-style ``usage`` mapping, or None when the provider reported none."""
    if not usage:
        return None
    try:
        total = usage.get("total_tokens")
        if total is not None:
            return int(total)
        return int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    except (AttributeError, TypeError, ValueError):
        return None

