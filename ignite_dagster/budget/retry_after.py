"""How long a provider asks us to wait (``retry-after-ms`` / ``retry-after``), read once for every caller:
the model client's retry decision, the image provider's error, and the shared budget's 429 pause.

It lives in ``budget`` because that is the lowest layer all three import (``queue/retry.py`` decides what
to do with the wait; ``budget`` may not import ``queue``)."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, then ``retry-after`` (seconds or HTTP date)."""
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    value = headers.get("retry-after")
    if value:
        try:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(0.0, email.utils.mktime_tz(parsed) - time.time())
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """``parse_retry_after`` of an SDK error's response headers (duck-typed: ``exc.response.headers``)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    return parse_retry_after({str(k).lower(): v for k, v in headers.items()})
