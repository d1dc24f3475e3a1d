"""The shapes the model must return (sent as strict JSON-schema structured outputs).

Why so loose: the schemas carry no length or count constraints. Strict structured outputs support only
a subset of JSON Schema, and a constraint the provider cannot enforce would turn a content problem
(three options instead of four) into an unparsable answer that costs a whole retry. Content rules are
checked afterwards by the course validator, whose coded issues drive a targeted repair of just the
failing items. Every field is required and nullable instead of optional, as strict mode demands.

Field names are the course format's camelCase names, so the model maps them one to one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FilledItem(_Strict):
    """One item's content; structure (groupId, clusterId, variant, mode) comes from the skeleton."""

    id: int
    text: str
    options: list[str] | None
    correctIndex: int | None  # noqa: N815 - the course format's name
    answer: float | None
    hint: str | None
    explain: str | None
    wrongExplanations: list[str] | None  # noqa: N815
    relatedStudyTextIds: list[str] | None  # noqa: N815


class ItemBatch(_Strict):
    """The answer to one fill call: the items of (part of) one group."""

    items: list[FilledItem]


class RepairedItems(_Strict):
    """The answer to one repair call: replacements for the failing items sent."""

    items: list[FilledItem]


class CourseOverview(_Strict):
    """Course-level text the skeleton cannot provide."""

    title: str
    description: str


class StudyTextOut(_Strict):
    """One study text; ``content`` carries ``[SECTION:…]`` and ``[IMAGE:…]`` markers."""

    title: str
    content: str
    learningObjectives: list[str]  # noqa: N815
    keywords: list[str]
    estimatedReadingTime: int  # noqa: N815 - minutes
    difficulty: str
