"""The media job: claimed media jobs → per course: generate → store + attach + report."""


from dagster import in_process_executor, job

from ignite_dagster.defs.media.ops import attach_images, claimed_media_jobs, generate_images

MEDIA_JOB = "generate_media"


@job(
    name=MEDIA_JOB,
    executor_def=in_process_executor,
    tags={"ignite/queue": "media"},
    description="Work claimed media jobs: generate images → upload to media-library → attach into course.json "
    "(compare-and-swap) → complete; one branch per course. Launched by media_jobs_sensor; launch it by hand "
    "with ops.claimed_media_jobs.config.claim_now = N to process pending media jobs now.",
)
def generate_media():
    claimed_media_jobs().map(lambda batch: attach_images(generate_images(batch)))
