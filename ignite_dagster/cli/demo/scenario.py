"""What the demo asks for: which courses, in which organization, under which idempotency keys, and their
enqueueing through ``submit_course_request`` (the path the HTTP API and ``ignite enqueue`` use).

Course ids are fixed (``demo-<topic>-<band>``): every demo regenerates the same courses. A run's tag names
its idempotency keys (``demo:<tag>:<course id>``), so the same tag replays that run's jobs, and a course
whose job from an earlier, interrupted demo is still queued is re-attached to that job.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:  # the CLI imports this module when it builds its parser: nothing heavy at runtime
    from ignite_dagster.course.request import CourseRequest
    from ignite_dagster.queue import CourseJob, JobQueue
    from ignite_dagster.storage import ObjectStore

ORG_NAME, ORG_SLUG = "Demo", "demo"
KEY_PREFIX = "demo:"
_TAG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,24}")


@dataclass(frozen=True)
class DemoCourse:
    """One course the demo asks for; ``topic`` + band make its course id."""

    topic: str
    subject: str
    grade_band: str
    mode: str
    strategy: str = "deterministic"
    items_per_group: int = 6

    @property
    def course_id(self) -> str:
        return f"demo-{self.topic}-{self.grade_band.lower()}"

    def request(self) -> CourseRequest:
        from ignite_dagster.course.request import CourseRequest

        return CourseRequest(course_id=self.course_id, subject=self.subject, grade_band=self.grade_band,
                             mode=self.mode, strategy=self.strategy, items_per_group=self.items_per_group)


# Offline: every one is compiled from a pack shipped in ignite_dagster/generation/packs/.
OFFLINE_COURSES: tuple[DemoCourse, ...] = (
    DemoCourse("addition", "addition", "3-5", "options"),
    DemoCourse("division", "division", "6-8", "numeric"),
    DemoCourse("multiplication", "multiplication", "K-2", "numeric"),
    DemoCourse("subtraction", "subtraction", "3-5", "options"),
    DemoCourse("water-cycle", "water cycle", "3-5", "options"),
    DemoCourse("ancient-egypt", "ancient egypt", "6-8", "options"),
)
# Only with a model configured: skeleton + model fill (small, to keep the cost to a few cents at most).
MODEL_COURSE = DemoCourse("photosynthesis", "photosynthesis", "6-8", "options", strategy="llm", items_per_group=3)


def demo_courses(model_configured: bool) -> list[DemoCourse]:
    return list(OFFLINE_COURSES) + ([MODEL_COURSE] if model_configured else [])


def parse_tag(value: str) -> str:
    """``--tag``: it goes into idempotency keys, so a short slug."""
    if not _TAG_RE.fullmatch(value):
        raise argparse.ArgumentTypeError("use 1-25 characters a-z, 0-9 and '-'")
    return value


def default_tag() -> str:
    """The run's start time, ``MMDD-HHMMSS``."""
    return time.strftime("%m%d-%H%M%S")


def idempotency_key(tag: str, course_id: str) -> str:
    return f"{KEY_PREFIX}{tag}:{course_id}"


@dataclass(frozen=True)
class Enqueued:
    """The demo's jobs in demo order, and how each came to be: replayed (same tag), re-attached (left
    queued by an earlier demo) or new."""

    jobs: list[tuple[DemoCourse, CourseJob]]
    replayed: int
    reattached: int

    @property
    def new(self) -> int:
        return len(self.jobs) - self.replayed - self.reattached


def enqueue(queue: JobQueue, store: ObjectStore, organization_id: UUID, courses: list[DemoCourse],
            tag: str) -> Enqueued:
    """One job per course: an earlier demo's still-queued job when there is one, else ``submit_course_request``
    under this tag's idempotency key (which replays the job a run with the same tag enqueued)."""
    from ignite_dagster.course_jobs.submit import submit_course_request
    from ignite_dagster.queue.watching import pending_course_jobs

    with queue.connection() as conn:
        leftover = pending_course_jobs(conn, organization_id, [c.course_id for c in courses],
                                       key_prefix=KEY_PREFIX, except_key_prefix=idempotency_key(tag, ""))
    jobs, replayed = [], 0
    for spec in courses:
        if spec.course_id in leftover:
            jobs.append((spec, leftover[spec.course_id]))
            continue
        result = submit_course_request(queue, store, spec.request(), organization_id=organization_id,
                                       idempotency_key=idempotency_key(tag, spec.course_id),
                                       requested_by="ignite demo")
        replayed += result.replayed
        jobs.append((spec, result.job))
    return Enqueued(jobs, replayed, len(leftover))
