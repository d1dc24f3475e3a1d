"""Storing generated media and attaching it into course.json — compare-and-swap, idempotent.

Why it is built this way:

* **Every write of course.json is ``update_json``** (compare-and-swap on the object version; on a
  conflict re-read and re-apply). Course persistence uses the same loop and merges attached media
  (``media.markers.merge_attached_media``), so a media job racing another media job or a regeneration never
  loses anyone's URL, and nobody waits on a lock a crashed process holds.
* **The mutation is a pure function of (document, target, url)** and idempotent: applying the same
  attachment twice leaves one attachment ("attach this URL here if it is not there"), never "append".
  ``update_json`` may run it several times, and a retried job re-applies it.
* **Object names** (``storage.keys.media_key``):
  ``media-library/courses/<courseId>/{study-texts/<sectionId>|items/<itemId>}/<uuid>.<ext>`` where the
  uuid is the *media job id*. One job owns one object, so a retry after a crash finds the
  image its earlier attempt stored (and pays for no second generation) and attaches the same URL: the
  course never collects two images for one job, and storage never collects orphans from retries.
* A missing course.json means the course is not generated yet: ``CourseNotReady`` (retryable). A
  target that does not exist in the course (section or item gone after a regeneration, option index
  out of range) is ``TargetMissing``, a target ref that cannot name a storage folder is
  ``storage.keys.InvalidMediaTarget``; neither is retryable: waiting does not bring it back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote
from uuid import UUID

from ignite_dagster.media.markers import IMAGE_MARKER, is_attached
from ignite_dagster.media.prompts import item_alt
from ignite_dagster.queue.retry import is_retryable
from ignite_dagster.storage.base import BUCKETS, NotFound, ObjectStore
from ignite_dagster.storage.cas import update_json
from ignite_dagster.storage.keys import course_path, media_job_prefix

ALT_MAX = 300


class CourseNotReady(RuntimeError):
    """course.json does not exist yet; the job is retried after backoff."""

    reason_code = "course_not_ready"
    retryable = is_retryable("media", reason_code)


class TargetMissing(RuntimeError):
    """The target named by the job is not in the course; no retry can fix that."""

    reason_code = "target_missing"
    retryable = is_retryable("media", reason_code)


# --- stored images -------------------------------------------------------------------------------------


def find_stored(store: ObjectStore, course_id: str, target: Mapping[str, Any], job_id: UUID) -> str | None:
    """The key of the image an earlier attempt of this job stored, if any (see module docstring)."""
    found = store.list(media_job_prefix(course_id, target, job_id))
    return found[0] if found else None


# --- public URL <-> key ---------------------------------------------------------------------------------

_PROBE = "ignite-url-probe"


def key_for_url(store: ObjectStore, url: str) -> str | None:
    """The storage key behind a public URL of ``store``, or None when the URL is not one of its URLs.

    Computed from ``store.public_url`` itself (a probe key per bucket) so it holds for every backend and
    every PUBLIC_MEDIA_BASE_URL without knowing how each backend builds its URLs.
    """
    for bucket in BUCKETS:
        probe = store.public_url(f"{bucket}/{_PROBE}")
        stem = probe[: -len(_PROBE)]
        if url.startswith(stem) and len(url) > len(stem):
            return f"{bucket}/{unquote(url[len(stem):])}"
    return None


# --- attachment ----------------------------------------------------------------------------------------


def _image_ref(url: str, alt: str | None, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = dict(previous or {})
    ref.update(type="image", url=url)
    if alt:
        ref["alt"] = alt[:ALT_MAX]
    return ref


def _find(seq: list[dict[str, Any]] | None, key: str, value: Any, what: str) -> dict[str, Any]:
    for entry in seq or []:
        if entry.get(key) == value or str(entry.get(key)) == str(value):
            return entry
    raise TargetMissing(f"{what} {value!r} is not in the course")


def apply_attachment(doc: dict[str, Any], target: Mapping[str, Any], url: str, alt: str | None = None) -> dict[str, Any]:
    """Attach ``url`` to ``target`` in ``doc`` (modified and returned); idempotent.

    * ``study_text``: the ``markerIndex``-th ``[IMAGE:…]`` marker of the section becomes ``[IMAGE:<url>]``
      when it still holds a description; when the section has no such marker, or that marker already
      carries another job's URL, ``[IMAGE:<url>]`` is appended: an attached URL is never overwritten
      (under concurrency an appended image can sit at the index a later job names, and replacing it
      would silently drop that job's image). Nothing changes when the section already carries this URL.
    * ``item_stimulus``: ``items[id].stimulus = {type: image, url, alt}`` (other stimulus fields kept).
    * ``item_option``: ``items[id].optionMedia[optionIndex] = {type: image, url, alt}``, the list padded
      with nulls to the number of options.

    Without an explicit ``alt``, an item image's alt text is the item's own words as the document holds
    them now (``media.prompts.item_alt``: the question for a stimulus, the option's text for an option).
    """
    kind = target.get("type")
    if kind == "study_text":
        text = _find(doc.get("studyTexts"), "id", target.get("sectionId"), "study text")
        content = text.get("content") or ""
        markers = list(IMAGE_MARKER.finditer(content))
        if any(m.group(1) == url for m in markers):
            return doc
        index = int(target.get("markerIndex") or 0)
        if 0 <= index < len(markers) and not is_attached(markers[index].group(1)):
            m = markers[index]
            text["content"] = f"{content[:m.start()]}[IMAGE:{url}]{content[m.end():]}"
        else:
            text["content"] = (content.rstrip() + "\n\n" if content.strip() else "") + f"[IMAGE:{url}]"
        return doc
    if kind in ("item_stimulus", "item_option"):
        item = _find(doc.get("items"), "id", target.get("itemId"), "item")
        if alt is None:
            alt = item_alt(item, target)
        if kind == "item_stimulus":
            item["stimulus"] = _image_ref(url, alt, item.get("stimulus"))
            return doc
        options = item.get("options") or []
        index = target.get("optionIndex")
        if index is None or not 0 <= int(index) < len(options):
            raise TargetMissing(f"item {item.get('id')} has no option {index!r} ({len(options)} options)")
        media = list(item.get("optionMedia") or [])
        media += [None] * (len(options) - len(media))
        media[int(index)] = _image_ref(url, alt, media[int(index)])
        item["optionMedia"] = media
        return doc
    raise TargetMissing(f"unknown target type {kind!r}")


@dataclass(frozen=True)
class AttachResult:
    doc: dict[str, Any]
    version: str
    conflicts: int


def attach_to_course(
    store: ObjectStore,
    course_id: str,
    target: Mapping[str, Any],
    url: str,
    alt: str | None = None,
    *,
    guard: Callable[[], None] | None = None,
) -> AttachResult:
    """CAS-attach ``url`` into ``courses/<courseId>/course.json``; ``guard`` (the claim check) runs
    before every attempt so a worker that lost its claim stops before writing."""

    def mutate(current: dict[str, Any] | None) -> dict[str, Any]:
        if guard is not None:
            guard()
        if current is None:
            raise CourseNotReady(f"{course_path(course_id)} does not exist yet")
        return apply_attachment(current, target, url, alt)

    doc, version, conflicts = update_json(store, course_path(course_id), mutate)
    return AttachResult(doc, version, conflicts)


# --- completeness (the media_complete asset check) ----------------------------------------------------


def attached_urls(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, url) for every image URL the course carries: study-text markers, stimuli, option media."""
    out: list[tuple[str, str]] = []
    for text in doc.get("studyTexts") or []:
        for i, value in enumerate(IMAGE_MARKER.findall(text.get("content") or "")):
            if is_attached(value):
                out.append((f"studyText {text.get('id')} marker {i}", value))
    for item in doc.get("items") or []:
        stim = item.get("stimulus")
        if isinstance(stim, Mapping) and stim.get("url"):
            out.append((f"item {item.get('id')} stimulus", str(stim["url"])))
        for k, media in enumerate(item.get("optionMedia") or []):
            if isinstance(media, Mapping) and media.get("url"):
                out.append((f"item {item.get('id')} option {k}", str(media["url"])))
    return out


def target_url(doc: Mapping[str, Any], target: Mapping[str, Any]) -> str | None:
    """The URL attached at ``target`` now, or None (a description marker, no stimulus, …).

    Raises TargetMissing when the target is not in the course at all.
    """
    kind = target.get("type")
    if kind == "study_text":
        text = _find(doc.get("studyTexts"), "id", target.get("sectionId"), "study text")  # type: ignore[arg-type]
        markers = IMAGE_MARKER.findall(text.get("content") or "")
        i = int(target.get("markerIndex") or 0)
        return markers[i] if i < len(markers) and is_attached(markers[i]) else None
    item = _find(doc.get("items"), "id", target.get("itemId"), "item")  # type: ignore[arg-type]
    if kind == "item_stimulus":
        return (item.get("stimulus") or {}).get("url")
    media = item.get("optionMedia") or []
    i = int(target.get("optionIndex") or 0)
    return (media[i] or {}).get("url") if i < len(media) and media[i] else None


@dataclass
class Completeness:
    """What the ``media_complete`` check reports for one course."""

    course_found: bool
    markers: int = 0
    pending_markers: list[str] = field(default_factory=list)
    urls: int = 0
    unresolved: list[str] = field(default_factory=list)
    missing_targets: list[str] = field(default_factory=list)
    requested: int = 0
    requested_attached: int = 0

    @property
    def passed(self) -> bool:
        return self.course_found and not (self.pending_markers or self.unresolved or self.missing_targets)

    def metadata(self) -> dict[str, Any]:
        return {
            "markers": self.markers, "pending_markers": len(self.pending_markers), "urls": self.urls,
            "unresolved_urls": len(self.unresolved), "missing_targets": len(self.missing_targets),
            "requested_item_targets": self.requested, "requested_item_targets_attached": self.requested_attached,
            "problems": "; ".join([*(f"pending: {p}" for p in self.pending_markers),
                                   *(f"unresolved: {u}" for u in self.unresolved),
                                   *(f"not attached: {t}" for t in self.missing_targets)])[:2000] or "none",
        }


def media_completeness(
    store: ObjectStore, course_id: str, requested_targets: list[Mapping[str, Any]] | None = None
) -> Completeness:
    """Every ``[IMAGE:…]`` marker of the course has a URL (a marker still holding a description is an
    image requested and not yet attached), every requested item target (the target of any media job of
    the course: stimuli and option images) carries a URL, and every URL in the course maps to an object
    that exists in storage. A requested target whose item left the course (regenerated differently) is
    not counted: nothing can be attached to it any more."""
    import json

    try:
        doc = json.loads(store.get(course_path(course_id)).data)
    except NotFound:
        return Completeness(course_found=False)
    report = Completeness(course_found=True)
    for text in doc.get("studyTexts") or []:
        for i, value in enumerate(IMAGE_MARKER.findall(text.get("content") or "")):
            report.markers += 1
            if not is_attached(value):
                report.pending_markers.append(f"studyText {text.get('id')} marker {i}")
    seen: set[str] = set()
    for target in requested_targets or []:
        if target.get("type") == "study_text" or json_target(target) in seen:
            continue  # study texts: covered by the markers (a description left in a marker is pending)
        seen.add(json_target(target))
        try:
            url = target_url(doc, target)
        except TargetMissing:
            continue
        report.requested += 1
        if url is None:
            report.missing_targets.append(json_target(target))
        else:
            report.requested_attached += 1
    for where, url in attached_urls(doc):
        report.urls += 1
        key = key_for_url(store, url)
        if key is None:
            report.unresolved.append(f"{where}: {url} (not a URL of this storage)")
            continue
        if not store.exists(key):
            report.unresolved.append(f"{where}: {url} (no object {key})")
    return report


def json_target(target: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(target.items()))
