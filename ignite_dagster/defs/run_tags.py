"""The tags that tie a run to the queue: the claims it holds, its queue, and its organizations and courses.

``ignite/jobs`` (``jobId:attempt,...``) is how every other part finds a run's claims: the run liveness
checks (``run_liveness.py``) heartbeat and judge them, the run-failure sensors hand them back, the
reconciler leaves them to a live run. The sensors set it on the runs they request, the ops and the
course asset on runs that claim for themselves (manual ``claim_now`` runs, materializations).
"""

from uuid import UUID

JOBS_TAG = "ignite/jobs"
QUEUE_TAG = "ignite/queue"  # course | media on the sensors' jobs, maintenance on the sweeps
ORG_TAG = "ignite/org"
COURSE_TAG = "ignite/course"


def encode_claims(claims: list[tuple[UUID | str, int]]) -> str:
    return ",".join(f"{job_id}:{attempt}" for job_id, attempt in claims)


def decode_claims(value: str) -> list[tuple[UUID, int]]:
    out = []
    for part in filter(None, (value or "").split(",")):
        job_id, attempt = part.rsplit(":", 1)
        out.append((UUID(job_id), int(attempt)))
    return out


def course_run_tags(jobs: list) -> dict[str, str]:
    """Tags that make a run findable by organization and course on the Runs page.

    ``ignite/org`` and ``ignite/course`` hold the id when the run works one (``multiple`` otherwise);
    every organization and course of the run also gets its own key (``ignite/org/<id>``,
    ``ignite/course/<id>``), because the Runs page filters by exact tag value and a batched run holds
    several courses. ``ignite/courses`` lists them for reading. (Added by the lead for issue 12.)"""
    orgs = sorted({str(j.organization_id) for j in jobs})
    courses = sorted({j.course_id for j in jobs})
    tags = {
        ORG_TAG: orgs[0] if len(orgs) == 1 else "multiple",
        COURSE_TAG: courses[0] if len(courses) == 1 else "multiple",
        "ignite/courses": ",".join(courses)[:1000],
    }
    tags.update({f"{ORG_TAG}/{org}": "true" for org in orgs})
    tags.update({f"{COURSE_TAG}/{course}": "true" for course in courses})
    return tags
