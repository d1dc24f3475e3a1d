"""The one ordered stage list (course_jobs/stages.py) is what the worker runs and the Dagster shell names."""

from __future__ import annotations

from ignite_dagster.course_jobs.stages import COURSE_STAGES, FINISH, PREPARE, chain
from ignite_dagster.course_jobs.worker import STAGES, CourseWorker


def test_the_worker_reports_the_listed_stages_in_order_with_rising_percents():
    names = [s.name for s in COURSE_STAGES]
    assert list(STAGES) == names and CourseWorker.stages is STAGES
    percents = [s.percent for s in COURSE_STAGES]
    assert percents == sorted(set(percents)) and percents[0] > 0 and percents[-1] < 100
    assert all(callable(getattr(CourseWorker, name, None)) for name in names)  # one worker method per stage
    assert tuple(names) == PREPARE + FINISH


def test_the_job_ops_and_asset_describe_the_listed_stages():
    from ignite_dagster.defs.courses.assets import build_generate_course_assets
    from ignite_dagster.defs.courses.jobs import generate_courses
    from ignite_dagster.defs.courses.ops import claimed_course_jobs, finish_courses

    for stage in COURSE_STAGES:
        assert f"{stage.name} ({stage.percent} %): {stage.meaning}" in generate_courses.description
        assert f"{stage.name} ({stage.percent} %)" in build_generate_course_assets(1).op.description
    assert chain(PREPARE) in claimed_course_jobs.description and chain(FINISH) in finish_courses.description
