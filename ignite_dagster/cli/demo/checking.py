"""The demo's verdict on each course it made: the job finished ``done`` and its course.json, read back from
storage, passes the course schema check the product applies everywhere (``course.validation.schema_issues``,
the same one the ``course_schema_valid`` asset check evaluates), so the demo cannot drift from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from ignite_dagster.course.validation import schema_issues
from ignite_dagster.queue import CourseJob
from ignite_dagster.storage import NotFound, ObjectStore
from ignite_dagster.storage.keys import course_path

State = Literal["valid", "invalid", "missing", "unfinished"]


@dataclass(frozen=True)
class CourseCheck:
    """``state``: valid (done and no schema errors), invalid (done, with errors: ``errors`` holds their
    codes), missing (done, no course.json) or unfinished (the job is not done). ``owner``: the job id the
    file says wrote it (a concurrent job for the same course may have written last: still valid)."""

    job: CourseJob
    state: State
    errors: list[str] = field(default_factory=list)
    warnings: int = 0
    owner: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "valid"


def check_course(store: ObjectStore, job: CourseJob) -> CourseCheck:
    if job.status != "done":
        return CourseCheck(job, "unfinished")
    try:
        doc = json.loads(store.get(job.result_path or course_path(job.course_id)).data)
    except NotFound:
        return CourseCheck(job, "missing")
    issues = schema_issues(doc)
    errors = sorted({i.code for i in issues if i.severity == "error"})
    owner = (doc.get("generation") or {}).get("jobId")
    return CourseCheck(job, "invalid" if errors else "valid", errors,
                       sum(i.severity != "error" for i in issues), None if owner is None else str(owner))
