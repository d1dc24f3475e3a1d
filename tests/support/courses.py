"""Fixture courses: a valid Course v2 document compiled from a deterministic pack, without a queue.

Tests of storage, media, publishing and the API need a realistic course document as *input*; they do not
test generation. This helper runs the same stage functions the course worker calls (strategy, skeleton,
fill, validate) with no job, no database and no model, and refuses to return a course with errors.
Generation itself is tested through the worker (``tests/support/generate.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ignite_dagster.course.request import CourseRequest
from ignite_dagster.course.validation import errors_of
from ignite_dagster.generation.stages.fill import fill
from ignite_dagster.generation.packs import default_index
from ignite_dagster.generation.stages.build_skeleton import build_skeleton
from ignite_dagster.generation.stages.select_strategy import select_strategy
from ignite_dagster.generation.types import GenerationDeps
from ignite_dagster.generation.stages.validate_normalize import validate_and_normalize


def pack_course(request: dict[str, Any]) -> dict[str, Any]:
    """The course document a deterministic pack compiles for ``request`` (no ``generation`` block)."""
    req = CourseRequest.model_validate(request)
    index = default_index()
    choice = select_strategy(req, index, model_configured=False)
    pack = index.get(choice.pack_id) if choice.pack_id else None
    skeleton = build_skeleton(req, choice, pack, index)
    draft = asyncio.run(fill(skeleton, req, choice, GenerationDeps(), pack)).course
    course, issues = validate_and_normalize(draft, skeleton, pack.gates if pack else None)
    assert course is not None and not errors_of(issues), issues
    return course.to_dict()
