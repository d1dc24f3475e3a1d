"""The object-storage contract shared by the local filesystem and S3 backends.

Keys are full paths whose first segment is the bucket (``courses/…``, ``media-library/…``), so the same
paths work on the local backend, on S3/MinIO and on Supabase Storage's S3 endpoint. ``version`` is an
opaque token (an ETag on S3); ``put(..., if_version=v)`` is the compare-and-swap that keeps two writers
of one object (media attaching while a course is regenerated) from losing each other's changes.

Version contract: a version changes whenever the content changes. Whether rewriting *identical* bytes
changes it is backend-specific (the local backend mints a new token on every write; an S3 ETag is the
content's MD5, so it stays the same). Both are safe for compare-and-swap: a CAS that succeeds against an
equal version is a CAS against equal content. ``ignite_dagster.storage.cas.update_json`` is the
read-modify-write loop built on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

BUCKETS = ("courses", "media-library")


class StorageError(RuntimeError):
    """Base class for storage failures."""


class NotFound(StorageError):
    """The key does not exist."""


class PreconditionFailed(StorageError):
    """A conditional put lost: the object changed (or exists / is absent) since the caller read it."""


class InvalidKey(StorageError, ValueError):
    """A key or prefix is malformed.

    Both a StorageError (callers catching storage failures see it) and a ValueError (it is a caller bug,
    not an outage): both backends apply the same rules so a key that works locally also works on S3.
    """


def split_key(key: str) -> tuple[str, str]:
    """Validate ``key`` and split it into (bucket, object path).

    Rules are strict on purpose: the local backend maps keys to filesystem paths, so ``..``, absolute
    paths, empty segments and backslashes could escape the storage root; leading-dot segments are
    reserved for the local backend's temp files. Applying the same rules on S3 keeps the backends
    interchangeable.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"invalid storage key {key!r}: empty")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKey(f"invalid storage key {key!r}: absolute, backslash or NUL")
    segments = key.split("/")
    if len(segments) < 2:
        raise InvalidKey(f"invalid storage key {key!r}: needs <bucket>/<path>")
    for seg in segments:
        if not seg:
            raise InvalidKey(f"invalid storage key {key!r}: empty segment")
        if seg.startswith("."):
            raise InvalidKey(f"invalid storage key {key!r}: segment {seg!r} starts with '.'")
    if segments[0] not in BUCKETS:
        raise InvalidKey(f"invalid storage key {key!r}: unknown bucket {segments[0]!r} (expected one of {BUCKETS})")
    return segments[0], "/".join(segments[1:])


def split_prefix(prefix: str) -> tuple[str, str]:
    """Validate a list prefix and split it into (bucket, object-path prefix).

    A prefix is a plain string prefix (``courses/abc`` matches ``courses/abc-2/course.json``), but it must
    name its bucket in full: ``courses`` or ``courses/...``. The part after the bucket follows the key
    rules except that it may be empty or end in ``/``.
    """
    if not isinstance(prefix, str) or not prefix:
        raise InvalidKey(f"invalid storage prefix {prefix!r}: empty")
    bucket, _, rest = prefix.partition("/")
    if bucket not in BUCKETS:
        raise InvalidKey(f"invalid storage prefix {prefix!r}: unknown bucket {bucket!r} (expected one of {BUCKETS})")
    if rest:
        # Validate with the key rules; a single trailing '/' (a "folder" prefix) is allowed.
        split_key(bucket + "/" + (rest[:-1] if rest.endswith("/") else rest))
    return bucket, rest


@dataclass(frozen=True)
class StoredObject:
    """One object as read: ``version`` is the token to hand back as ``put(..., if_version=...)``."""

    key: str
    data: bytes
    version: str
    content_type: str


@runtime_checkable
class ObjectStore(Protocol):
    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_version: str | None = None,
        if_absent: bool = False,
        durable: bool = True,
    ) -> str:
        """Atomically write ``data``; return the new version.

        ``if_version``: write only if the current version equals it, else PreconditionFailed.
        ``if_absent``: write only if the key does not exist, else PreconditionFailed.
        ``durable=False``: the object may be lost (never half-written) if the machine loses power soon
        after; for what tolerates a loss — the answer cache, debug artifacts — where flushing each write
        to disk would cost more than the object is worth. Backends that are always durable ignore it.
        """
        ...

    def get(self, key: str) -> StoredObject:
        """Read an object; NotFound when absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Delete; absent keys are not an error."""
        ...

    def public_url(self, key: str) -> str:
        """The URL a browser uses to fetch the object (from PUBLIC_MEDIA_BASE_URL)."""
        ...
