from __future__ import annotations

from dagster import in_process_executor, job

from ignite_dagster.course_jobs.stages import FINISH, PREPARE, chain, stage_lines
from ignite_dagster.defs.courses.ops import claimed_course_jobs, finish_courses

GENERATE_JOB = "generate_courses"


@job(
    name=GENERATE_JOB,
    executor_def=in_process_executor,
    tags={"ignite/queue": "course"},
    description=f"Work claimed course jobs: claim and prepare ({chain(PREPARE)}), then each course's "
    f"{chain(FINISH)} in the background, finished as soon as its own fill is done; one finish_courses step "
    "reports each course (its partition's materializations and checks, or its failure) as it is done. "
    "Launched by course_jobs_sensor; launch it by hand with "
    "ops.claimed_course_jobs.config.claim_now = N to process pending jobs now.\n\nStages (progress when each "
    f"starts):\n\n{stage_lines()}",
)
def generate_courses():
    finish_courses(claimed_course_jobs())
