"""The skeleton: the structure a fill must respect (ids, groups, clusters, variants, levels, arithmetic).

A course-format concept (the normaliser and validator check drafts against it), so it lives beside the
course model; ``generation/stages/build_skeleton.py`` builds one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ignite_dagster.course.model import Group, Level
from ignite_dagster.course.request import Mode


class ArithmeticMeta(BaseModel):
    """The exact arithmetic of one item; the model may phrase it, never change it."""

    op: Literal["add", "sub", "mul", "div"]
    a: int
    b: int
    expected: int | float


class SkeletonItem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    group_id: int = Field(alias="groupId")
    cluster_id: str = Field(alias="clusterId")
    variant: Literal["1", "2", "3"]
    mode: Mode
    meta: ArithmeticMeta | None = None


class StudyTextSlot(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    order: int
    title_hint: str | None = Field(default=None, alias="titleHint")
    wants_image: bool = Field(default=False, alias="wantsImage")


class Skeleton(BaseModel):
    """The structure a fill must respect: ids, groups, clusters, variants, levels, arithmetic."""

    course_id: str
    subject: str
    grade_band: str
    mode: Mode
    locale: str = "en"
    groups: list[Group]
    levels: list[Level]
    items: list[SkeletonItem]
    study_text_slots: list[StudyTextSlot] = Field(default_factory=list)
    topic: str | None = None
    # True when no pack named the structure (groups "Part n", levels "Level n"): the model path then
    # plans the course first (skill-named groups, objectives, titles) and writes everything from the plan.
    needs_plan: bool = False

    def item(self, item_id: int) -> SkeletonItem | None:
        for it in self.items:
            if it.id == item_id:
                return it
        return None
