"""Which images a course wants, as media-job targets: at enqueue (the request) and later (a course).

One vocabulary for both paths. A *spec* names targets:

* ``study_texts`` — every ``[IMAGE:<description>]`` marker still holding a description (the request's
  ``wants_images``);
* ``stimulus:<itemId>`` / ``stimulus:all`` — a picture for the item's question (``items[].stimulus``);
* ``options:<itemId>`` / ``options:all`` — one picture per answer option (``items[].optionMedia``).

``plan_images`` expands specs against a course document into (target_ref, prompt) pairs, with prompts
built from the item's own text (``media.prompts``). A spec that names something the course does not
have raises :class:`UnknownTarget` naming the spec: the caller refuses the request (4xx) rather than
accept what it cannot honour. ``enqueue_planned`` inserts the jobs (one per target, idempotent per key);
``request_course_images`` is the "images for an existing course" operation the API and CLI share.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from ignite_dagster.course.request import ITEM_IMAGE_REGEX
from ignite_dagster.media.attach import TargetMissing, target_url
from ignite_dagster.media.markers import image_targets
from ignite_dagster.media.prompts import PROMPT_MAX, option_prompt, stimulus_prompt
from ignite_dagster.storage.base import NotFound, ObjectStore
from ignite_dagster.storage.keys import course_path

STUDY_TEXTS = "study_texts"
SPEC_REGEX = rf"{STUDY_TEXTS}|{ITEM_IMAGE_REGEX}"
_SPEC = re.compile(SPEC_REGEX)


class UnknownTarget(ValueError):
    """A spec names a target the course does not have (no such item, an item without options)."""

    def __init__(self, spec: str, reason: str):
        self.spec = spec
        super().__init__(f"{spec}: {reason}")


@dataclass(frozen=True)
class PlannedImage:
    target: dict[str, Any]
    prompt: str

    @property
    def key_suffix(self) -> str:
        """What names the target inside an idempotency key."""
        t = self.target
        if t["type"] == "study_text":
            return f"st:{t['sectionId']}:{t['markerIndex']}"
        if t["type"] == "item_stimulus":
            return f"stim:{t['itemId']}"
        return f"opt:{t['itemId']}:{t['optionIndex']}"


def check_spec(spec: str) -> str:
    if _SPEC.fullmatch(spec) is None:
        raise UnknownTarget(spec, "expected study_texts, stimulus:<itemId>|all or options:<itemId>|all")
    return spec


def _items(doc: Mapping[str, Any], which: str, spec: str) -> list[dict[str, Any]]:
    items = [i for i in doc.get("items") or [] if isinstance(i, dict)]
    if which == "all":
        return items
    found = [i for i in items if str(i.get("id")) == which]
    if not found:
        ids = [i.get("id") for i in items]
        span = f"{min(ids)}..{max(ids)}" if ids else "none"
        raise UnknownTarget(spec, f"the course has no item {which} (items {span})")
    return found


def plan_images(doc: Mapping[str, Any], specs: Iterable[str]) -> list[PlannedImage]:
    """The targets (with prompts) the specs name in ``doc``, in spec order, each target once."""
    planned: dict[str, PlannedImage] = {}
    for spec in specs:
        check_spec(spec)
        if spec == STUDY_TEXTS:
            for target, prompt in image_targets(dict(doc)):
                p = PlannedImage(target, prompt[:PROMPT_MAX])
                planned.setdefault(p.key_suffix, p)
            continue
        kind, _, which = spec.partition(":")
        for item in _items(doc, which, spec):
            if kind == "stimulus":
                p = PlannedImage({"type": "item_stimulus", "itemId": item["id"]}, stimulus_prompt(item))
                planned.setdefault(p.key_suffix, p)
                continue
            options = item.get("options") or []
            if not options:
                if which == "all":
                    continue  # "options:all" means the items that have options
                raise UnknownTarget(spec, f"item {item['id']} has no answer options (mode {item.get('mode')})")
            for k in range(len(options)):
                p = PlannedImage({"type": "item_option", "itemId": item["id"], "optionIndex": k}, option_prompt(item, k))
                planned.setdefault(p.key_suffix, p)
    return list(planned.values())


def request_specs(wants_images: bool, item_images: Sequence[str] | None) -> list[str]:
    """The specs a course request asks for (``wants_images`` is the study-text spec)."""
    return ([STUDY_TEXTS] if wants_images else []) + list(item_images or [])


def enqueue_planned(
    conn: psycopg.Connection,
    *,
    organization_id: UUID,
    course_id: str,
    planned: Iterable[PlannedImage],
    key_prefix: str,
    course_job_id: UUID | None = None,
    style: str | None = None,
    created_by: UUID | None = None,
    requested_by: str | None = None,
) -> list[UUID]:
    """Insert one pending media job per target; a key already live (pending/processing) is left alone.
    Returns the ids of the jobs inserted. Runs in the caller's transaction when there is one."""
    return [job_id for _, job_id in _insert_planned(
        conn, organization_id=organization_id, course_id=course_id, planned=planned, key_prefix=key_prefix,
        course_job_id=course_job_id, style=style, created_by=created_by, requested_by=requested_by)]


def _insert_planned(
    conn: psycopg.Connection,
    *,
    organization_id: UUID,
    course_id: str,
    planned: Iterable[PlannedImage],
    key_prefix: str,
    course_job_id: UUID | None,
    style: str | None,
    created_by: UUID | None,
    requested_by: str | None,
) -> list[tuple[PlannedImage, UUID]]:
    ids: list[tuple[PlannedImage, UUID]] = []
    for p in planned:
        row = conn.execute(
            """
            INSERT INTO ai_media_jobs (organization_id, course_id, course_job_id, prompt, style, target_ref,
                                       idempotency_key, created_by, requested_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING RETURNING id
            """,
            (organization_id, course_id, course_job_id, p.prompt, style, Jsonb(p.target),
             f"{key_prefix}:{p.key_suffix}", created_by, requested_by),
        ).fetchone()
        if row:
            ids.append((p, row["id"] if isinstance(row, dict) else row[0]))
    return ids


# --- images for an existing course ------------------------------------------------------------------------


class CourseNotFound(LookupError):
    """No course of this id in the organization (another organization's course is not found either)."""


@dataclass
class MediaRequestResult:
    course_id: str
    job_ids: list[UUID] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)  # the targets the new jobs attach to
    already_attached: list[dict[str, Any]] = field(default_factory=list)
    already_queued: list[dict[str, Any]] = field(default_factory=list)


def _row_value(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, dict) else row[0]


def course_owner(conn: psycopg.Connection, course_id: str) -> UUID | None:
    """The organization that owns ``course_id`` (None: no such course, or deleted)."""
    row = conn.execute(
        "SELECT organization_id FROM course_metadata WHERE id = %s AND deleted_at IS NULL", (course_id,)
    ).fetchone()
    return None if row is None else _row_value(row, "organization_id")


def request_course_images(
    conn: psycopg.Connection,
    store: ObjectStore,
    *,
    organization_id: UUID,
    course_id: str,
    specs: Sequence[str],
    style: str | None = None,
    created_by: UUID | None = None,
    requested_by: str | None = None,
) -> MediaRequestResult:
    """Enqueue media jobs for ``specs`` of a course ``organization_id`` owns; nothing else is touched.

    A target that already carries an image is left as it is (``already_attached``), one with a live job
    is not asked twice (``already_queued``). Raises CourseNotFound (another organization's course
    included) and UnknownTarget (a spec naming what the course lacks) before anything is written.
    """
    if course_owner(conn, course_id) != organization_id:
        raise CourseNotFound(f"course {course_id} not found")
    try:
        doc = json.loads(store.get(course_path(course_id)).data)
    except NotFound as exc:
        raise CourseNotFound(f"course {course_id} has no content yet") from exc
    planned = plan_images(doc, specs)
    result = MediaRequestResult(course_id=course_id)
    live = {
        json.dumps(r["target_ref"] if isinstance(r, dict) else r[0], sort_keys=True)
        for r in conn.execute(
            "SELECT target_ref FROM ai_media_jobs WHERE course_id = %s AND organization_id = %s "
            "AND status IN ('pending', 'processing', 'failed', 'stale')",
            (course_id, organization_id),
        ).fetchall()
    }
    wanted: list[PlannedImage] = []
    for p in planned:
        try:
            attached = target_url(doc, p.target)
        except TargetMissing:  # pragma: no cover - plan_images only names targets of doc
            attached = None
        if attached:
            result.already_attached.append(p.target)
        elif json.dumps(p.target, sort_keys=True) in live:
            result.already_queued.append(p.target)
        else:
            wanted.append(p)
    with conn.transaction():
        inserted = _insert_planned(
            conn, organization_id=organization_id, course_id=course_id, planned=wanted, key_prefix=f"course:{course_id}",
            course_job_id=None, style=style, created_by=created_by, requested_by=requested_by,
        )
    result.job_ids = [job_id for _, job_id in inserted]
    result.targets = [p.target for p, _ in inserted]
    # a concurrent request inserted the same key first: its job is this target's job
    result.already_queued += [p.target for p in wanted if all(p is not q for q, _ in inserted)]
    return result
