"""Pick the storage backend from Settings: the one place that knows which settings each backend needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ignite_dagster.config import ConfigError
from ignite_dagster.storage.base import ObjectStore

if TYPE_CHECKING:
    from ignite_dagster.config import Settings


def open_store(settings: Settings) -> ObjectStore:
    """The configured ObjectStore; raises ConfigError naming every missing setting at once.

    Nothing is created or probed here (no buckets, no folders): opening a store is cheap and side-effect
    free, so it can run at import of a Dagster code location. The local backend creates folders on the
    first write; S3 buckets are provisioned (``S3ObjectStore.ensure_buckets`` in dev).
    """
    if settings.storage_backend == "local":
        from ignite_dagster.storage.local import LocalObjectStore

        return LocalObjectStore(settings.local_storage_root(), settings.public_media_base_url)
    if settings.storage_backend == "s3":
        settings.require("s3 storage", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
        from ignite_dagster.storage.s3 import S3ObjectStore

        assert settings.s3_region and settings.s3_access_key_id and settings.s3_secret_access_key
        return S3ObjectStore(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            bucket_prefix=settings.s3_bucket_prefix,
            public_base_url=settings.public_media_base_url,
        )
    raise ConfigError("storage", [], [f"STORAGE_BACKEND={settings.storage_backend!r} must be local or s3"])
