"""Image markers in study texts, and carrying attached media across a regeneration.

A study text asks for an image with ``[IMAGE:<description>]``; attaching the image replaces the
description with the image's URL (``[IMAGE:<url>]``, see ``media.attach``). Course persistence uses
``merge_attached_media`` so a regenerated course keeps the images already attached, and
``image_targets`` to enqueue one media job per marker still holding a description.
"""

from __future__ import annotations

import re
from typing import Any

IMAGE_MARKER = re.compile(r"\[IMAGE:([^\]]*)\]")


def is_attached(marker_value: str) -> bool:
    """A marker whose content is a URL carries an attached image; otherwise it is a description."""
    return marker_value.startswith(("http://", "https://", "file://"))


def merge_attached_media(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """Carry media already attached in ``old`` into ``new`` so regenerating a course keeps its images.

    ``new`` is modified and returned. This runs inside the compare-and-swap loop of course.json, so
    ``old`` is always the document as stored right now, including URLs a media job attached a moment
    ago; it must be a pure function of its inputs. The rules mirror how media is attached
    (``media.attach.apply_attachment``), so an attachment and a regeneration commute:

    * study texts (same id): the i-th marker of ``new`` that still holds a description takes the URL
      of the i-th marker of ``old``; every other URL of ``old`` (attached by appending, or ``new`` has
      fewer markers, or ``new`` holds its own URL there) is appended, so no URL is dropped. A URL
      already present in ``new`` is never added twice.
    * items (same id): ``stimulus`` of ``old`` when ``new`` has none; ``optionMedia`` merged per option
      index (``new``'s entries win), kept only for options ``new`` still has.
    """
    if not old:
        return new
    old_texts = {t.get("id"): t for t in old.get("studyTexts") or [] if isinstance(t, dict)}
    for text in new.get("studyTexts") or []:
        prev = old_texts.get(text.get("id"))
        if not prev:
            continue
        old_values = IMAGE_MARKER.findall(prev.get("content") or "")
        content = text.get("content") or ""
        present = {v for v in IMAGE_MARKER.findall(content) if is_attached(v)}
        counter = iter(range(len(old_values) + len(content)))

        def keep(match: re.Match, old_values: list[str] = old_values, present: set[str] = present, counter=counter) -> str:
            i = next(counter)
            if not is_attached(match.group(1)) and i < len(old_values):
                url = old_values[i]
                if is_attached(url) and url not in present:
                    present.add(url)
                    return f"[IMAGE:{url}]"
            return match.group(0)

        content = IMAGE_MARKER.sub(keep, content)
        for url in [u for u in old_values if is_attached(u) and u not in present]:
            present.add(url)
            content = (content.rstrip() + "\n\n" if content.strip() else "") + f"[IMAGE:{url}]"
        text["content"] = content
    old_items = {i.get("id"): i for i in old.get("items") or [] if isinstance(i, dict)}
    for item in new.get("items") or []:
        prev = old_items.get(item.get("id"))
        if not prev:
            continue
        if prev.get("stimulus") and not item.get("stimulus"):
            item["stimulus"] = prev["stimulus"]
        old_media = prev.get("optionMedia") or []
        options = item.get("options") or []
        if old_media and options:
            media = list(item.get("optionMedia") or [])[: len(options)]
            media += [None] * (len(options) - len(media))
            for k in range(len(options)):
                if media[k] is None and k < len(old_media) and old_media[k]:
                    media[k] = old_media[k]
            if any(m is not None for m in media):
                item["optionMedia"] = media
    return new


def image_targets(course_doc: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(target_ref, prompt) for every study-text image marker still holding a description."""
    out = []
    for text in course_doc.get("studyTexts") or []:
        for i, desc in enumerate(IMAGE_MARKER.findall(text.get("content", ""))):
            if not is_attached(desc) and desc.strip():
                out.append(({"type": "study_text", "sectionId": text["id"], "markerIndex": i}, desc.strip()))
    return out
