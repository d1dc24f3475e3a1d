from __future__ import annotations

from dagster import in_process_executor, job

from ignite_dagster.defs.courses.ops import (
    build_skeleton,
    claimed_course_jobs,
    fill,
    persist,
    repair,
    select_strategy,
    validate_normalize,
)

GENERATE_JOB = "generate_courses"


@job(
    name=GENERATE_JOB,
    executor_def=in_process_executor,
    tags={"ignite/queue": "course"},
    description="Work claimed course jobs: select strategy → skeleton → fill → validate → repair → persist, "
    "one branch per course. Launched by course_jobs_sensor; launch it by hand with "
    "ops.claimed_course_jobs.config.claim_now = N to process pending jobs now.",
)
def generate_courses():
    claimed_course_jobs().map(
        lambda work: persist(repair(validate_normalize(fill(build_skeleton(select_strategy(work))))))
    )
