"""Local filesystem backend: the dev/test default, with the same guarantees the S3 backend relies on.

Layout under ``root``::

    <root>/<bucket>/<path>                 the object bytes, exactly as written (servable as-is)
    <root>/<bucket>/<dir>/.tmp-*           in-flight writes (hidden; never listed)
    <root>/.ignite/meta/<h2>/<h>.json      sidecar: key, version, content type, file identity
    <root>/.ignite/locks/<h2>/<h>.lock     per-key lock file (h = sha256 of the key)

Why it is built this way:

* Atomic writes: bytes go to a temp file in the target's directory, are fsynced, and ``os.replace`` swaps
  them in. Any reader, including one that knows nothing of this class (a web server, ``file://``),
  sees the old file or the new one, never half of one. A ``durable=False`` write (the answer cache,
  debug artifacts) skips the four fsyncs, which cost about half of a write here: it is still atomic
  for readers and survives a crash of the process; only a power loss right after may lose it.
* Compare-and-swap across processes: the version check and the two renames (data, then sidecar) happen
  under an exclusive ``flock`` on the key's lock file; ``get`` takes the shared lock so it always pairs
  bytes with the version that wrote them. ``flock`` locks belong to an open file description, so they
  exclude threads of one process as well as separate processes (on one host; not across NFS clients).
* Versions: every write mints a fresh token, even for identical bytes. The sidecar also records the
  data file's inode/size/mtime; if they do not match (a crash between the two renames, or someone
  replaced the file by hand) the version falls back to a content hash, so a stale sidecar can never
  make a compare-and-swap succeed against bytes it did not describe.
* Sidecars and locks live outside the bucket folders, hashed by key, so they cannot collide with any
  key and ``list`` never has to filter them.

Limitation shared with any filesystem: a key cannot be both an object and a "folder" of other keys
(``courses/a`` and ``courses/a/b``); S3 allows that, this backend raises StorageError.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mimetypes
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from ignite_dagster.storage.base import (
    NotFound,
    PreconditionFailed,
    StorageError,
    StoredObject,
    split_key,
    split_prefix,
)

_INTERNAL = ".ignite"
_TMP_PREFIX = ".tmp-"
T = TypeVar("T")


class LocalObjectStore:
    """An ObjectStore on a local folder; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path, public_base_url: str | None = None):
        self.root = Path(root).absolute()
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._dirs: set[Path] = set()  # folders this store made or found (``_ensure_dir``)

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={str(self.root)!r})"

    # --- paths -------------------------------------------------------------------------------------

    def _data_path(self, key: str) -> Path:
        split_key(key)  # validates; the key is already a safe relative path afterwards
        return self.root.joinpath(*key.split("/"))

    def _internal_path(self, kind: str, key: str, suffix: str) -> Path:
        h = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.root / _INTERNAL / kind / h[:2] / f"{h}{suffix}"

    # --- locking -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, key: str, *, exclusive: bool) -> Iterator[None]:
        path = self._internal_path("locks", key, ".lock")
        fd = self._in_dir(path.parent, lambda: os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # --- metadata ----------------------------------------------------------------------------------

    def _read_meta(self, key: str) -> dict | None:
        try:
            raw = self._internal_path("meta", key, ".json").read_bytes()
            meta = json.loads(raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # an unreadable sidecar is treated like a missing one: version from content
        return meta if isinstance(meta, dict) and meta.get("key") == key else None

    @staticmethod
    def _identity(st: os.stat_result) -> list[int]:
        return [st.st_ino, st.st_size, st.st_mtime_ns]

    @staticmethod
    def _content_version(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def _describe(self, key: str, st: os.stat_result, read: Callable[[], bytes]) -> tuple[str, str]:
        """(version, content type) of the data file with stat ``st``; ``read()`` yields its bytes if needed."""
        meta = self._read_meta(key)
        if meta is not None and meta.get("identity") == self._identity(st):
            return str(meta["version"]), str(meta.get("content_type") or "application/octet-stream")
        guessed = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return self._content_version(read()), guessed

    def _current_version(self, key: str, path: Path) -> str | None:
        """The version now on disk (caller holds the key's lock), or None when absent."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            raise StorageError(f"{key!r} is a folder on the local backend, not an object")
        return self._describe(key, st, path.read_bytes)[0]

    # --- helpers -----------------------------------------------------------------------------------

    def _ensure_dir(self, directory: Path) -> None:
        """``mkdir -p``, once per folder and store: a write into a folder made before costs no syscall."""
        if directory not in self._dirs:
            directory.mkdir(parents=True, exist_ok=True)
            self._dirs.add(directory)

    def _in_dir(self, directory: Path, create: Callable[[], T]) -> T:
        """``create`` a file in ``directory`` (made once by ``_ensure_dir``), again after making the folder
        anew if it went away since (removed by hand or by a test's cleanup)."""
        self._ensure_dir(directory)
        try:
            return create()
        except FileNotFoundError:
            self._dirs.discard(directory)
            self._ensure_dir(directory)
            return create()

    @staticmethod
    def _write_temp(directory: Path, data: bytes, durable: bool = True) -> tuple[Path, os.stat_result]:
        """Write ``data`` to a fresh hidden temp file in ``directory`` (fsynced when ``durable``); return it
        and its stat."""
        # The name is random only: appending the target's name could exceed NAME_MAX (255 bytes).
        tmp = directory / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        return tmp, st

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        """Make a rename durable: without this a power loss can forget the new directory entry."""
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

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
        """Atomically write ``data`` (conditionally, if asked); return the new version."""
        if if_version is not None and if_absent:
            raise ValueError("put: pass if_version or if_absent, not both")
        path = self._data_path(key)
        meta_path = self._internal_path("meta", key, ".json")
        try:
            self._ensure_dir(path.parent)
            self._ensure_dir(meta_path.parent)
        except (FileExistsError, NotADirectoryError) as exc:
            raise StorageError(f"cannot store {key!r}: a parent path is an object on the local backend") from exc

        version = f"{time.time_ns():x}-{secrets.token_hex(6)}"
        try:
            tmp_data, st = self._in_dir(path.parent, lambda: self._write_temp(path.parent, bytes(data), durable))
        except OSError as exc:
            raise StorageError(f"cannot store {key!r}: {exc}") from exc
        tmp_meta: Path | None = None
        try:
            meta = {"key": key, "version": version, "content_type": content_type, "identity": self._identity(st)}
            tmp_meta, _ = self._in_dir(meta_path.parent,
                                       lambda: self._write_temp(meta_path.parent, json.dumps(meta).encode(), durable))
            # Only the check and the two renames are under the lock: the slow part (writing and fsyncing
            # the bytes) is done, so a writer holds other writers and readers up for microseconds.
            with self._locked(key, exclusive=True):
                if if_version is not None or if_absent:
                    current = self._current_version(key, path)
                    if if_absent and current is not None:
                        raise PreconditionFailed(f"{key!r} already exists")
                    if if_version is not None and current != if_version:
                        raise PreconditionFailed(
                            f"{key!r} is at version {current!r}, not {if_version!r}"
                            if current is not None
                            else f"{key!r} does not exist (expected version {if_version!r})"
                        )
                try:
                    os.replace(tmp_data, path)
                except IsADirectoryError as exc:
                    raise StorageError(f"cannot store {key!r}: it is a folder of other keys on the local backend") from exc
                os.replace(tmp_meta, meta_path)
            if durable:
                self._fsync_dir(path.parent)
                self._fsync_dir(meta_path.parent)
        except BaseException as exc:
            for tmp in (tmp_data, tmp_meta):
                if tmp is not None:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
            if isinstance(exc, OSError):
                raise StorageError(f"cannot store {key!r}: {exc}") from exc
            raise
        return version

    def get(self, key: str) -> StoredObject:
        """Read bytes, version and content type as one consistent triple (under the shared lock)."""
        path = self._data_path(key)
        if not path.is_file():
            raise NotFound(key)
        with self._locked(key, exclusive=False):
            try:
                with open(path, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    data = fh.read()
            except FileNotFoundError as exc:
                raise NotFound(key) from exc
            except IsADirectoryError as exc:
                raise NotFound(key) from exc
            version, content_type = self._describe(key, st, lambda: data)
        return StoredObject(key=key, data=data, version=version, content_type=content_type)

    def exists(self, key: str) -> bool:
        return self._data_path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix`` (plain string prefix), sorted; temp files are never listed."""
        bucket, _ = split_prefix(prefix)
        found: list[str] = []

        def walk(directory: Path, key_dir: str) -> None:
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                return
            for entry in entries:
                if entry.name.startswith("."):
                    continue  # temp files (and any other dot-file, which no valid key can name)
                key = key_dir + entry.name
                if entry.is_dir(follow_symlinks=False):
                    sub = key + "/"
                    if sub.startswith(prefix) or prefix.startswith(sub):
                        walk(Path(entry.path), sub)
                elif entry.is_file() and key.startswith(prefix):
                    found.append(key)

        walk(self.root / bucket, bucket + "/")
        return sorted(found)

    def delete(self, key: str) -> None:
        """Remove the object and its sidecar; absent keys are fine. The lock file stays (see below)."""
        path = self._data_path(key)
        with self._locked(key, exclusive=True):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except (IsADirectoryError, PermissionError) as exc:
                if path.is_dir():
                    return  # a "folder" is not an object: nothing to delete, as on S3
                raise StorageError(f"cannot delete {key!r}: {exc}") from exc
            with contextlib.suppress(FileNotFoundError):
                self._internal_path("meta", key, ".json").unlink()
        # The lock file is deliberately kept: unlinking it while another process waits on it would let
        # that process and a newcomer lock two different inodes and both believe they hold the lock.

    def public_url(self, key: str) -> str:
        """``<PUBLIC_MEDIA_BASE_URL>/<key>`` when configured (a server in front of ``root``), else file://."""
        path = self._data_path(key)
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(key, safe='/')}"
        return path.as_uri()
