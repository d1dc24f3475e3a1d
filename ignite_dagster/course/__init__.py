"""The course document (Course v2), its coded validation, normalisation and readability.

``normalize`` is not re-exported here: it needs the skeleton, which needs the request; keeping the package
root light keeps ``import ignite_dagster.course`` cheap.
"""

from ignite_dagster.course.issues import Issue
from ignite_dagster.course.model import (
    Course,
    GenerationInfo,
    Group,
    Item,
    Level,
    Stimulus,
    StudyText,
    StudyTextMetadata,
    parse_course,
)
from ignite_dagster.course.validation import ContentGates, validate_course

__all__ = [
    "ContentGates",
    "Course",
    "GenerationInfo",
    "Group",
    "Issue",
    "Item",
    "Level",
    "Stimulus",
    "StudyText",
    "StudyTextMetadata",
    "parse_course",
    "validate_course",
]
