"""Object storage: one protocol, a local-filesystem and an S3 backend, a compare-and-swap helper, and
``keys`` (every object key the factory reads or writes).

Importing this package is light on purpose: ``S3ObjectStore`` is importable from here, but boto3 is
only imported when one is constructed.
"""

from __future__ import annotations

from ignite_dagster.storage.base import (
    BUCKETS,
    InvalidKey,
    NotFound,
    ObjectStore,
    PreconditionFailed,
    StorageError,
    StoredObject,
)
from ignite_dagster.storage.cas import update_json
from ignite_dagster.storage.from_settings import open_store
from ignite_dagster.storage.local import LocalObjectStore
from ignite_dagster.storage.s3 import S3ObjectStore

__all__ = [
    "BUCKETS",
    "InvalidKey",
    "LocalObjectStore",
    "NotFound",
    "ObjectStore",
    "PreconditionFailed",
    "S3ObjectStore",
    "StorageError",
    "StoredObject",
    "open_store",
    "update_json",
]
