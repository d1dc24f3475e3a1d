"""The validate_normalize stage: parse the draft, normalise it against the skeleton, apply the coded rules."""

from __future__ import annotations

from typing import Any

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import Course, parse_course
from ignite_dagster.course.normalize import normalize_course
from ignite_dagster.course.quality import QualityThresholds
from ignite_dagster.course.skeleton import Skeleton
from ignite_dagster.course.validation import ContentGates, validate_course


def with_structure(draft: dict[str, Any], skeleton: Skeleton | None) -> dict[str, Any]:
    """Structure the skeleton owns (ids, band, groups, levels) is supplied when a draft omits it.

    Content (title, texts, options) is never supplied: a draft without it fails validation.
    """
    if skeleton is None:
        return draft
    data = dict(draft)
    data.setdefault("id", skeleton.course_id)
    data.setdefault("subject", skeleton.subject)
    data.setdefault("gradeBand", skeleton.grade_band)
    data.setdefault("locale", skeleton.locale)
    data.setdefault("groups", [g.model_dump(mode="json", by_alias=True, exclude_none=True) for g in skeleton.groups])
    data.setdefault("levels", [lv.model_dump(mode="json", by_alias=True, exclude_none=True) for lv in skeleton.levels])
    return data


def validate_and_normalize(
    draft: dict[str, Any], skeleton: Skeleton | None, gates: ContentGates | None,
    quality: QualityThresholds | None = None,
) -> tuple[Course | None, list[Issue]]:
    """Parse, normalise, validate (with ``quality``: the quality gates too). ``(None, schema issues)`` when
    the draft cannot be loaded at all; otherwise the normalised course and all its issues."""
    course, issues = parse_course(with_structure(draft, skeleton))
    if course is None:
        return None, issues
    course = normalize_course(course, skeleton)
    return course, validate_course(course, skeleton, gates, quality)
