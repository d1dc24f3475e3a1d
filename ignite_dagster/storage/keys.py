"""Every object key the factory writes or reads, built in one place.

Keys are full paths whose first segment is the bucket (see ``storage.base``). Nothing outside this
module spells a key layout; callers name the concept (``course_path``, ``media_key``, …) and the layout
below is the single source for docs/architecture.md's storage section and for docs/operations.md.

``courses`` bucket::

    courses/<courseId>/course.json                      the current Course v2 document
    courses/<courseId>/versions/<version>.json          published snapshots (catalog.publishing)
    courses/debug/jobs/<jobId>/special_requests.json    notes / study text saved at enqueue
    courses/debug/jobs/<jobId>/<artifact>.json          debugging artifacts of one generation
    courses/debug/llm-cache/fills/<ab>/<sha256>.json    cached model answers of one fill (cache.FillCache)
    courses/debug/llm-cache/<ab>/<sha256>.json          a cached answer of a call made outside a fill
    courses/debug/health/probe.json                     the readiness probe's write test

``media-library`` bucket::

    media-library/courses/<courseId>/study-texts/<sectionId>/<mediaJobId>.<ext>
    media-library/courses/<courseId>/items/<itemId>/<mediaJobId>.<ext>
    media-library/tmp/ai-generated/<uuid>.<ext>         the live (synchronous) image path
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from ignite_dagster.storage.base import BUCKETS, InvalidKey

COURSES_BUCKET, MEDIA_BUCKET = BUCKETS

# --- courses bucket ---------------------------------------------------------------------------------------


def course_path(course_id: str) -> str:
    return f"{COURSES_BUCKET}/{course_id}/course.json"


def version_path(course_id: str, version: int) -> str:
    return f"{COURSES_BUCKET}/{course_id}/versions/{version}.json"


DEBUG_PREFIX = f"{COURSES_BUCKET}/debug"
LLM_CACHE_PREFIX = f"{DEBUG_PREFIX}/llm-cache"
HEALTH_PROBE_KEY = f"{DEBUG_PREFIX}/health/probe.json"


def debug_prefix(job_id: UUID | str) -> str:
    """The folder of one course job's debugging artifacts (and its saved special requests)."""
    return f"{DEBUG_PREFIX}/jobs/{job_id}"


def special_requests_path(job_id: UUID | str) -> str:
    return f"{debug_prefix(job_id)}/special_requests.json"


# --- media-library bucket ---------------------------------------------------------------------------------

LIVE_MEDIA_PREFIX = f"{MEDIA_BUCKET}/tmp/ai-generated"


class InvalidMediaTarget(InvalidKey):
    """A media job's target ref cannot name a storage folder (unknown type, missing or unusable id).

    Carries the queue's failure vocabulary: waiting does not fix a target ref, so it is not retryable."""

    reason_code = "target_missing"
    retryable = False


_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _segment(value: Any) -> str:
    """A storage-key segment for a section or item id: ids are free text (1–64 chars); keys are strict."""
    seg = _SAFE.sub("-", str(value)).strip("-")
    if not seg:
        raise InvalidMediaTarget(f"id {value!r} cannot name a storage folder")
    return seg


def course_media_prefix(course_id: str) -> str:
    """``media-library/courses/<courseId>``: every image of one course sits below it."""
    return f"{MEDIA_BUCKET}/courses/{course_id}"


def media_folder(course_id: str, target: Mapping[str, Any]) -> str:
    """``media-library/courses/<courseId>/study-texts/<sectionId>`` or ``…/items/<itemId>``."""
    kind = target.get("type")
    if kind == "study_text":
        if not target.get("sectionId"):
            raise InvalidMediaTarget("study_text target without sectionId")
        return f"{course_media_prefix(course_id)}/study-texts/{_segment(target['sectionId'])}"
    if kind in ("item_stimulus", "item_option"):
        if target.get("itemId") is None:
            raise InvalidMediaTarget(f"{kind} target without itemId")
        return f"{course_media_prefix(course_id)}/items/{_segment(target['itemId'])}"
    raise InvalidMediaTarget(f"unknown target type {kind!r}")


def media_key(course_id: str, target: Mapping[str, Any], job_id: UUID | str, ext: str) -> str:
    """One media job owns one object: the job id names it (a retry finds its earlier attempt's image)."""
    return f"{media_folder(course_id, target)}/{job_id}.{ext}"


def media_job_prefix(course_id: str, target: Mapping[str, Any], job_id: UUID | str) -> str:
    """The prefix every object of ``media_key(..., job_id, <any ext>)`` starts with."""
    return f"{media_folder(course_id, target)}/{job_id}."


def live_media_key(name: UUID | str, ext: str) -> str:
    return f"{LIVE_MEDIA_PREFIX}/{name}.{ext}"
