"""The retry policy, in one place: which failures the queue retries per job kind, how long a retried job
waits, how often a claim may go back for free, and how one model call retries inside a run.

Two layers retry, on purpose, and both are defined here:

* **The queue** retries a *job*: a failure with a retryable reason goes to ``failed`` and is claimable
  again after an exponential backoff with equal jitter (``QUEUE_BACKOFF``, computed by the SQL function
  ``fail_job``: ``min(cap, base * 2^retry_count)`` scaled uniformly into ``[1/2, 1]``, never sooner than
  an upstream Retry-After), until ``retry_count`` reaches ``max_retries``; a non-retryable reason goes to
  ``dead_letter`` at once. ``COURSE_RETRYABLE`` and ``MEDIA_RETRYABLE`` say which reasons are retried.
  A claim whose run died before any stage ran goes back to ``pending`` without spending a retry, at most
  ``FREE_RELEASE_LIMIT`` times per job (SQL ``ignite_free_release_limit()``).
* **The model client** retries one *call* inside a run (``decide``): a course makes many calls, and one
  throttled call should not cost the whole job an attempt. Its table:

  ===========================================  =========================================================
  429 with code ``insufficient_quota``          fail at once: ``provider_quota`` (account-wide)
  429 otherwise                                 wait ``retry-after-ms``/``retry-after`` (else backoff),
                                                at most ``max_retries`` times → ``provider_rate_limited``.
                                                A requested wait above ``max_retry_after_seconds`` is not
                                                sat out inside a run: ``provider_rate_limited`` at once.
                                                The wait pauses the whole shared budget when there is one.
  5xx, 408, 409, connection error               exponential backoff with jitter (``retry-after`` honoured
                                                when sent), at most ``max_retries`` times →
                                                ``provider_unavailable``
  timeout                                       at once, at most ``timeout_retries`` times →
                                                ``provider_timeout``
  401, 403, 404                                 ``provider_error`` at once (account-wide: bad key, no
                                                access, unknown model)
  other 4xx (bad request)                       ``provider_error`` at once (the same request fails again)
  ``finish_reason: length``                     once more with the output budget doubled (within the
                                                slot's ceiling) → ``output_truncated``
  refusal / ``content_filter``                  ``content_refused``
  malformed JSON / schema mismatch / empty      at most ``malformed_retries`` more attempts → ``provider_error``
  ===========================================  =========================================================

This module is pure (no I/O, no clock, no randomness: the caller passes the jitter draw), so the table is
tested as a table. The SQL side of the queue backoff cannot import Python; ``tests/integration/test_retry_policy.py``
asserts that ``fail_job``'s defaults, ``ignite_free_release_limit()`` and the settings' defaults agree with
the constants here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

# -- the queue: which reasons a job retries ----------------------------------------------------------------

# Transient provider trouble: another attempt, later, can succeed.
PROVIDER_TRANSIENT = frozenset({"provider_rate_limited", "provider_unavailable", "provider_timeout"})

# Failures of any stage of either kind (queue/staged.py): the storage refused a write (an outage passes),
# or an exception nobody classified (retried: it may be transient, and max_retries bounds it).
STAGE_RETRYABLE = frozenset({"storage_error", "internal_error"})

# A course retries transient provider trouble and a truncated answer (the next attempt's fill may fit).
# validation_failed and quality_failed carry an explicit flag from the stage that raised them (a repair
# with a model may answer differently; quality_failed is retried once per job, see course_jobs/worker.py).
COURSE_RETRYABLE = PROVIDER_TRANSIENT | STAGE_RETRYABLE | {"output_truncated"}

# A media job makes one provider call per attempt and never retries inside the run, so every transient
# reason goes to the queue's backoff. A timed-out image is worth another attempt (the request may have
# been slow, not wrong); before this policy media dead-lettered ``provider_timeout`` at once. A course
# that is not generated yet (``course_not_ready``) will be; a missing target (``target_missing``) will not.
MEDIA_RETRYABLE = PROVIDER_TRANSIENT | STAGE_RETRYABLE | {"course_not_ready"}

JobKind = Literal["course", "media"]
RETRYABLE_REASONS: dict[JobKind, frozenset[str]] = {"course": COURSE_RETRYABLE, "media": MEDIA_RETRYABLE}


def is_retryable(kind: JobKind, reason_code: str) -> bool:
    """Whether the queue gives a job of ``kind`` that failed with ``reason_code`` another attempt."""
    return reason_code in RETRYABLE_REASONS[kind]


# -- the queue: backoff and free releases ------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``min(cap, base * 2^n)`` scaled into ``[1 - jitter, 1]``."""

    base_seconds: float
    cap_seconds: float
    jitter: float  # the share of the delay that is random (0.5: "equal jitter")

    def delay(self, n: int, draw: float) -> float:
        """The wait before retry ``n + 1`` (``n`` retries already spent); ``draw`` is uniform in [0, 1)."""
        return min(self.cap_seconds, self.base_seconds * 2 ** min(n, 30)) * (1 - self.jitter * draw)

    @property
    def base(self) -> timedelta:
        return timedelta(seconds=self.base_seconds)

    @property
    def cap(self) -> timedelta:
        return timedelta(seconds=self.cap_seconds)


# Defaults of IGNITE_BACKOFF_BASE_SECONDS / IGNITE_BACKOFF_CAP_SECONDS and of SQL fail_job (002), which
# computes it: least(cap, base * power(2, least(retry_count, 30))) * (0.5 + random() / 2).
QUEUE_BACKOFF = Backoff(base_seconds=30.0, cap_seconds=900.0, jitter=0.5)

# A claim that dies before any stage ran goes back to pending without spending a retry at most this many
# times per job (SQL ignite_free_release_limit(), 008); then it counts like any failure.
FREE_RELEASE_LIMIT = 3


# -- one model call: the per-call decision -----------------------------------------------------------------

# Between two attempts of one call: short, because the run holds a slot while it waits.
CALL_BACKOFF = Backoff(base_seconds=0.5, cap_seconds=8.0, jitter=0.25)

OutcomeKind = Literal["http_status", "timeout", "connection", "truncated", "content_filter", "refusal",
                      "malformed"]


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a model call ended with (an answer that parsed is not an outcome: it is done).

    ``detail`` is the text the failure message quotes (the provider's message, the exception's name,
    the refusal, the parse error); ``budget``/``ceiling`` are the output tokens asked and the most a
    retry may ask (truncation only)."""

    kind: OutcomeKind
    status: int | None = None
    quota: bool = False  # a 429 whose code or type is insufficient_quota
    retry_after: float | None = None
    detail: str = ""
    budget: int | None = None
    ceiling: int | None = None


@dataclass(frozen=True)
class Attempts:
    """What one call has spent so far, per kind of retry."""

    transient: int = 0
    timeouts: int = 0
    malformed: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class CallLimits:
    """The per-call bounds (settings or ProviderConfig fields)."""

    max_retries: int = 3
    timeout_retries: int = 1
    malformed_retries: int = 2
    max_retry_after_seconds: float = 120.0
    timeout_seconds: float = 60.0  # only quoted in the provider_timeout message
    backoff: Backoff = CALL_BACKOFF


@dataclass(frozen=True)
class Decision:
    """Retry (after ``delay`` seconds, None: at once; ``attempts`` is the new count) or fail with ``reason``.

    ``pause_budget``: the wait is the provider's limit for everyone, so it pauses the shared budget
    instead of this call sleeping alone. ``fatal``: the failure is account-wide, the client sends no
    further request. ``budget``: the output budget of the next attempt (None: unchanged)."""

    retry: bool
    attempts: Attempts
    message: str
    reason: str | None = None
    delay: float | None = None
    pause_budget: bool = False
    fatal: bool = False
    budget: int | None = None

    @property
    def reason_code(self) -> str:
        assert self.reason is not None, "a retry has no reason code"
        return self.reason


def _fail(attempts: Attempts, reason: str, message: str, *, fatal: bool = False) -> Decision:
    return Decision(False, attempts, message, reason=reason, fatal=fatal)


def decide(outcome: Outcome, attempts: Attempts, limits: CallLimits, *, draw: float = 0.0) -> Decision:
    """The per-call retry decision of the table above; ``draw`` (uniform in [0, 1)) is the backoff's jitter."""
    kind = outcome.kind
    if kind == "http_status":
        status = outcome.status or 0
        if status == 429 and outcome.quota:
            return _fail(attempts, "provider_quota", f"provider quota exhausted: {outcome.detail}", fatal=True)
        if status not in (408, 409, 429) and status < 500:
            return _fail(attempts, "provider_error",
                         f"provider rejected the request (HTTP {status}): {outcome.detail}",
                         fatal=status in (401, 403, 404))
        reason = "provider_rate_limited" if status == 429 else "provider_unavailable"
        wait = outcome.retry_after
        if attempts.transient >= limits.max_retries:
            return _fail(attempts, reason, f"HTTP {status} after {attempts.transient + 1} attempts: {outcome.detail}")
        if wait is not None and wait > limits.max_retry_after_seconds:
            return _fail(attempts, reason, f"provider asks to wait {wait:.0f}s (HTTP {status})")
        delay = wait if wait is not None else limits.backoff.delay(attempts.transient, draw)
        spent = replace(attempts, transient=attempts.transient + 1)
        return Decision(True, spent, f"HTTP {status}, retry {spent.transient} in {delay:.2f}s", delay=delay,
                        pause_budget=status == 429)
    if kind == "timeout":
        if attempts.timeouts >= limits.timeout_retries:
            return _fail(attempts, "provider_timeout",
                         f"no answer within {limits.timeout_seconds:.0f}s of silence, "
                         f"{attempts.timeouts + 1} attempt(s) (IGNITE_LLM_TIMEOUT_SECONDS)")
        spent = replace(attempts, timeouts=attempts.timeouts + 1)
        return Decision(True, spent, f"timed out ({outcome.detail}), retry {spent.timeouts}")
    if kind == "connection":
        if attempts.transient >= limits.max_retries:
            return _fail(attempts, "provider_unavailable", f"{outcome.detail} after {attempts.transient + 1} attempts")
        delay = limits.backoff.delay(attempts.transient, draw)
        spent = replace(attempts, transient=attempts.transient + 1)
        return Decision(True, spent, f"{outcome.detail}, retry {spent.transient} in {delay:.2f}s", delay=delay)
    if kind == "truncated":
        budget = outcome.budget or 1
        if not attempts.truncated:
            doubled = budget * 2 if outcome.ceiling is None else min(budget * 2, outcome.ceiling)
            return Decision(True, replace(attempts, truncated=True),
                            f"output truncated, retrying with max_completion_tokens={doubled}", budget=doubled)
        return _fail(attempts, "output_truncated", f"output truncated even with {budget} output tokens")
    if kind == "content_filter":
        return _fail(attempts, "content_refused", "the provider's content filter stopped the answer")
    if kind == "refusal":
        return _fail(attempts, "content_refused", f"the model refused: {outcome.detail[:300]}")
    if kind == "malformed":
        spent = replace(attempts, malformed=attempts.malformed + 1)
        if spent.malformed > limits.malformed_retries:
            return _fail(spent, "provider_error",
                         f"malformed structured output after {spent.malformed} attempts: {outcome.detail}")
        return Decision(True, spent, f"malformed output ({outcome.detail}), retry {spent.malformed}")
    raise ValueError(f"unknown outcome kind {kind!r}")
