"""S3 backend (AWS S3, MinIO, Supabase Storage's S3 endpoint) on boto3.

Mapping: the key's first segment is the bucket, renamed ``<bucket_prefix><segment>`` so several
deployments can share one account; the rest is the object key. The version is the ETag as S3 returns
it (quotes included).

Compare-and-swap uses S3 conditional writes: ``if_version`` sends PutObject ``If-Match: <etag>`` and
``if_absent`` sends ``If-None-Match: *``. S3 answers 412 PreconditionFailed when the condition fails,
409 ConditionalRequestConflict when a concurrent conditional write raced it, and 404 NoSuchKey for
``If-Match`` on a missing key; all three become PreconditionFailed, which is what the caller's
read-modify-write loop needs (re-read, re-apply).

Server support, as verified or known:

* AWS S3: If-None-Match since 2024-08, If-Match since 2024-11; atomic.
* moto 5.x (the tests' real HTTP server): enforces both headers on PutObject (412, and 404 for
  If-Match on a missing key), but checks the condition and stores the object in two unlocked steps,
  and ``ThreadedMotoServer`` runs each request on its own thread. So moto's conditional write is not
  atomic under concurrency: with frequent forced GIL switches, 8 processes x 50 CAS increments lost
  2-4 of 400 updates, and concurrent GET/PUT of one key produced sporadic 500s. (At default GIL
  settings 2,400 increments lost none, which is luck, not a guarantee.) The tests therefore serve moto
  with one request at a time (``tests/support/moto_s3.py::SerializedMotoServer``), giving it the
  per-request atomicity real S3 has; no lost update was seen that way under the same forced switching.
* MinIO: documents conditional PutObject. Supabase Storage's S3 endpoint: not verified here. A server
  that silently *ignores* the headers would turn every conditional put into a blind overwrite (lost
  updates, no error), so ``check_conditional_writes()`` probes the real endpoint and raises if it does.

Client configuration: path-style addressing (MinIO and Supabase need it); "standard" retries for
throttling and 5xx; and checksums only "when required", because boto3 >= 1.36 otherwise adds CRC
trailers that several S3-compatible servers reject. A retried PutObject whose first attempt did land
comes back 412 on retry; ``update_json`` then re-reads and re-applies, so its mutations should be
idempotent (attach this URL, set this field), not blind increments, when the network is unreliable.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ignite_dagster.storage.base import (
    BUCKETS,
    NotFound,
    PreconditionFailed,
    StorageError,
    StoredObject,
    split_key,
    split_prefix,
)

if TYPE_CHECKING:
    from botocore.client import BaseClient

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


class S3ObjectStore:
    """An ObjectStore on an S3-compatible endpoint; see the module docstring for conditional writes."""

    def __init__(
        self,
        endpoint_url: str | None,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        bucket_prefix: str = "",
        public_base_url: str | None = None,
        *,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ):
        # boto3 is imported here, not at module level, so importing ignite_dagster.storage stays cheap
        # for code (and processes) that only ever use the local backend.
        import boto3
        from botocore.config import Config

        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.region = region
        self.bucket_prefix = bucket_prefix
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        config = Config(
            region_name=region,
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session of our own: boto3's default session is not thread-safe to create clients from.
        session = boto3.session.Session()
        self._client: BaseClient = session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint_url={self.endpoint_url!r}, bucket_prefix={self.bucket_prefix!r})"

    # --- mapping and errors ------------------------------------------------------------------------

    def bucket_name(self, bucket: str) -> str:
        """The real S3 bucket behind a logical bucket (``courses`` -> ``<prefix>courses``)."""
        return f"{self.bucket_prefix}{bucket}"

    def _locate(self, key: str) -> tuple[str, str]:
        bucket, path = split_key(key)
        return self.bucket_name(bucket), path

    @staticmethod
    def _error_code(exc: Exception) -> tuple[str, int | None]:
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code, status

    def _wrap(self, exc: Exception, what: str) -> StorageError:
        code, status = self._error_code(exc)
        if code == "NoSuchBucket":
            return StorageError(f"{what}: bucket missing ({exc}); create it (S3ObjectStore.ensure_buckets in dev)")
        return StorageError(f"{what}: {exc}")

    @staticmethod
    def _client_errors() -> tuple[type[Exception], ...]:
        from botocore.exceptions import BotoCoreError, ClientError

        return (ClientError, BotoCoreError)

    # --- ObjectStore -------------------------------------------------------------------------------

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
        """PutObject (atomic on S3), conditional via If-Match / If-None-Match; returns the new ETag. Every
        S3 write is durable: ``durable`` changes nothing here."""
        if if_version is not None and if_absent:
            raise ValueError("put: pass if_version or if_absent, not both")
        bucket, path = self._locate(key)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": path, "Body": bytes(data), "ContentType": content_type}
        if if_version is not None:
            kwargs["IfMatch"] = if_version
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        try:
            response = self._client.put_object(**kwargs)
        except self._client_errors() as exc:
            code, status = self._error_code(exc)
            conditional = if_version is not None or if_absent
            if conditional and (code in _PRECONDITION_CODES or status in (409, 412)):
                raise PreconditionFailed(f"{key!r}: conditional put lost ({code or status})") from exc
            if if_version is not None and (code == "NoSuchKey" or (status == 404 and code != "NoSuchBucket")):
                raise PreconditionFailed(f"{key!r} does not exist (expected version {if_version!r})") from exc
            raise self._wrap(exc, f"put {key!r}") from exc
        return str(response["ETag"])

    def get(self, key: str) -> StoredObject:
        bucket, path = self._locate(key)
        try:
            response = self._client.get_object(Bucket=bucket, Key=path)
            data = response["Body"].read()
        except self._client_errors() as exc:
            code, _ = self._error_code(exc)
            if code in _NOT_FOUND_CODES:
                raise NotFound(key) from exc
            raise self._wrap(exc, f"get {key!r}") from exc
        return StoredObject(
            key=key,
            data=data,
            version=str(response["ETag"]),
            content_type=str(response.get("ContentType") or "application/octet-stream"),
        )

    def exists(self, key: str) -> bool:
        bucket, path = self._locate(key)
        try:
            self._client.head_object(Bucket=bucket, Key=path)
        except self._client_errors() as exc:
            code, status = self._error_code(exc)
            # HEAD has no body, so a missing bucket also shows up as a bare 404: both mean "not there".
            if code in _NOT_FOUND_CODES or status == 404:
                return False
            raise self._wrap(exc, f"exists {key!r}") from exc
        return True

    def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted (ListObjectsV2, all pages)."""
        bucket, rest = split_prefix(prefix)
        keys: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket_name(bucket), Prefix=rest):
                keys.extend(f"{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
        except self._client_errors() as exc:
            raise self._wrap(exc, f"list {prefix!r}") from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        """DeleteObject; S3 itself treats deleting an absent key as success."""
        bucket, path = self._locate(key)
        try:
            self._client.delete_object(Bucket=bucket, Key=path)
        except self._client_errors() as exc:
            code, _ = self._error_code(exc)
            if code in _NOT_FOUND_CODES:
                return
            raise self._wrap(exc, f"delete {key!r}") from exc

    def public_url(self, key: str) -> str:
        """``<PUBLIC_MEDIA_BASE_URL>/<real bucket>/<path>``; without it, the path-style endpoint URL.

        The real bucket name (with ``bucket_prefix``) is used because that is what a public URL on
        Supabase (``…/storage/v1/object/public/<bucket>/<path>``) or S3 addresses.
        """
        bucket, path = self._locate(key)
        tail = f"{quote(bucket, safe='')}/{quote(path, safe='/')}"
        if self.public_base_url:
            return f"{self.public_base_url}/{tail}"
        if self.endpoint_url:
            return f"{self.endpoint_url}/{tail}"
        return f"https://s3.{self.region}.amazonaws.com/{tail}"

    # --- operations helpers ------------------------------------------------------------------------

    def ensure_buckets(self) -> list[str]:
        """Create the missing buckets (dev/tests; production buckets are provisioned); return those created."""
        created: list[str] = []
        for logical in BUCKETS:
            name = self.bucket_name(logical)
            try:
                self._client.head_bucket(Bucket=name)
                continue
            except self._client_errors() as exc:
                code, status = self._error_code(exc)
                if not (status == 404 or code in ("404", "NoSuchBucket", "NotFound")):
                    raise self._wrap(exc, f"head bucket {name!r}") from exc
            kwargs: dict[str, Any] = {"Bucket": name}
            if self.region and self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self._client.create_bucket(**kwargs)
            except self._client_errors() as exc:
                code, _ = self._error_code(exc)
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise self._wrap(exc, f"create bucket {name!r}") from exc
                continue
            created.append(name)
        return created

    def check_conditional_writes(self, bucket: str = "courses") -> None:
        """Probe that the endpoint enforces If-None-Match / If-Match; raise StorageError if it does not.

        Worth running once at deploy time against an unfamiliar S3-compatible server: one that ignores
        the headers fails open (silent overwrites) rather than with an error.
        """
        key = f"{bucket}/debug/storage-probe/{uuid.uuid4().hex}.txt"
        try:
            first = self.put(key, b"probe-1", content_type="text/plain", if_absent=True)
            try:
                self.put(key, b"probe-2", content_type="text/plain", if_absent=True)
            except PreconditionFailed:
                pass
            else:
                raise StorageError(f"{self!r} ignores If-None-Match on PutObject: compare-and-swap is unsafe")
            try:
                self.put(key, b"probe-3", content_type="text/plain", if_version='"0000000000000000"')
            except PreconditionFailed:
                pass
            else:
                raise StorageError(f"{self!r} ignores If-Match on PutObject: compare-and-swap is unsafe")
            self.put(key, b"probe-4", content_type="text/plain", if_version=first)
        finally:
            self.delete(key)
