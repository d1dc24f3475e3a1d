"""Read-modify-write of a JSON object with compare-and-swap: the one way two writers share a file.

Media attachment and course persistence both edit ``courses/<id>/course.json``. Instead of a lock
service, each writer reads the object and its version, applies its change, and writes back only if the
version is unchanged; if another writer got there first, it re-reads and re-applies its change on top.
No writer's change is lost, and no writer waits on a lock held by a crashed process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from ignite_dagster.storage.base import NotFound, ObjectStore, PreconditionFailed, StorageError
from ignite_dagster.storage.json_codec import dump_document, load

JSON_CONTENT_TYPE = "application/json"


def dump_json(doc: Any) -> bytes:
    """The one JSON encoding for stored documents (stable, human-readable, UTF-8; see ``json_codec``)."""
    return dump_document(doc)


def _read(store: ObjectStore, key: str) -> tuple[dict | None, bytes | None, str | None]:
    try:
        obj = store.get(key)
    except NotFound:
        return None, None, None
    try:
        doc = load(obj.data)
    except ValueError as exc:  # not UTF-8 or not JSON
        raise StorageError(f"{key!r} is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise StorageError(f"{key!r} holds JSON {type(doc).__name__}, expected an object")
    return doc, obj.data, obj.version


def update_json(
    store: ObjectStore,
    key: str,
    mutate: Callable[[dict | None], dict],
    *,
    max_attempts: int = 50,
) -> tuple[dict, str, int]:
    """Apply ``mutate`` to the JSON object at ``key`` atomically; return (new doc, version, conflicts).

    ``mutate`` receives a freshly parsed copy of the current document (``None`` when the key is absent)
    and returns the document to store; it may modify its argument in place. It can run more than once
    (once per conflict), so it must be a pure function of its input: no side effects outside it. Prefer
    idempotent changes ("attach this URL if absent") over blind ones ("append", "+1"): if the network
    drops the reply to a write that did land, the transport retry sees a conflict and the change is
    re-applied on top of itself.

    If the result equals what is stored, nothing is written and the current version is returned, so an
    idempotent change (attach a URL that is already attached) does not churn versions.

    Conflicts back off briefly with jitter so a crowd of writers does not retry in lockstep. After
    ``max_attempts`` lost races, PreconditionFailed is raised: that is contention far beyond what this
    design expects, and worth surfacing rather than spinning.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    conflicts = 0
    for attempt in range(max_attempts):
        current, raw, version = _read(store, key)
        new_doc = mutate(current)
        if not isinstance(new_doc, dict):
            raise TypeError(f"update_json: mutate returned {type(new_doc).__name__}, expected dict")
        if raw is not None and version is not None and load(raw) == new_doc:
            return new_doc, version, conflicts
        try:
            if version is None:
                new_version = store.put(key, dump_json(new_doc), content_type=JSON_CONTENT_TYPE, if_absent=True)
            else:
                new_version = store.put(key, dump_json(new_doc), content_type=JSON_CONTENT_TYPE, if_version=version)
        except PreconditionFailed:
            conflicts += 1
            if attempt + 1 < max_attempts:
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            continue
        return new_doc, new_version, conflicts
    raise PreconditionFailed(f"update_json {key!r}: gave up after {max_attempts} conflicting attempts")
