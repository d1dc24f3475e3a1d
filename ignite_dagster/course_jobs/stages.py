"""The course stages, in order: the one list the worker, the Dagster job and the course asset follow.

Each stage has the progress percent its job row shows when it starts and a one-line meaning. The
worker (``course_jobs/worker.py``) runs them in this order and reports these percents; the Dagster
shell (``defs/courses/jobs.py``, ``ops.py``, ``assets.py``) builds its descriptions from this list, so
the UI names the stages the worker runs. Plain Python: no Dagster.

``PREPARE`` and ``FINISH`` split the chain where a run splits it: the stages that run in
``claimed_course_jobs`` (a course's strategy and skeleton) and those that run in the background and
are collected by ``finish_courses`` (``CourseWorker.prepare`` / ``finish``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    percent: int  # the job's progress when the stage starts
    meaning: str


COURSE_STAGES: tuple[Stage, ...] = (
    Stage("select_strategy", 5, "choose a pack or the model for the request"),
    Stage("build_skeleton", 10, "lay out groups, items and study-text slots"),
    Stage("fill", 20, "write the texts and items through the model (progress rises with every answered call)"),
    Stage("validate_normalize", 70, "validate against Course v2 and normalize (milliseconds: its start is not "
                                    "written as progress; its event is)"),
    Stage("repair", 80, "bounded repair rounds for what failed validation (progress per round; nothing when "
                        "nothing failed)"),
    Stage("persist", 90, "write course.json, the metadata row and the catalog update"),
)

PREPARE: tuple[str, ...] = ("select_strategy", "build_skeleton")
FINISH: tuple[str, ...] = tuple(s.name for s in COURSE_STAGES if s.name not in PREPARE)

# stage name -> progress percent when it starts (StagedWorker.stages)
STAGE_PERCENT: dict[str, int] = {s.name: s.percent for s in COURSE_STAGES}


def chain(names: tuple[str, ...] = tuple(STAGE_PERCENT)) -> str:
    """``select_strategy → build_skeleton → …``: stage names as the descriptions write them."""
    return " → ".join(names)


def stage_lines() -> str:
    """One line per stage: name, start percent and meaning (job and asset descriptions)."""
    return "\n".join(f"{i}. {s.name} ({s.percent} %): {s.meaning}" for i, s in enumerate(COURSE_STAGES, 1))
