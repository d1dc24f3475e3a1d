"""The course document (Course v2), its coded validation, normalisation and readability.

``normalize`` is not re-exported here: it depends on the generation skeleton types, and importing it from
the package root would make ``course`` and ``generation.types`` import each other.
"""

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
from ignite_dagster.course.validation import ContentGates, Issue, validate_course

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
