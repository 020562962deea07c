"""The v2 asset store of one service: blake3-addressed blobs, UUID records, a size cap, cleanup.

Layout under the store's root (the service's own state folder, ``<state>/v2/assets``)::

    blobs/<hex[:2]>/<hex>      the bytes, named by their blake3 (one copy however many records)
    records/<uuid>.json        one asset: hash, size, content type, file name, times, job

An upload whose bytes are already stored is a dedup hit (the existing upload's record comes back,
``created_new: false``, its retention extended). Job outputs get a record each (their own id and
``job_id``) over a shared blob. Records expire after ``ttl`` seconds; when the blobs would pass
``max_bytes``, the least recently used records (not ``pinned`` by a job in flight) go first.
``from-path`` reads only regular files under ``import_dir`` (symlinks resolved, checked again on
the opened descriptor), copying them in: nothing else on the host is reachable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from blake3 import blake3

from ...atomic import atomic_write
from .common import V2Error, iso, now

__all__ = ["AssetRecord", "AssetStore", "check_hash", "safe_name"]

logger = logging.getLogger("comfypack.serve.v2")

_HASH = re.compile(r"^blake3:[0-9a-f]{64}$")
_CHUNK = 1 << 16
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")


def check_hash(value: Any, field: str = "hash") -> str:
    """``blake3:<64 hex>`` (lower-cased), or 422 naming ``field``."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _HASH.match(text):
        raise V2Error(
            422,
            "invalid_request",
            f"{field!r} must be 'blake3:' and 64 hex digits",
            {"field": field},
        )
    return text


def safe_name(value: Any, field: str = "file_path") -> str:
    """A display file name: the last path segment, printable, at most 255 characters."""
    if value is None:
        return "file"
    if not isinstance(value, str):
        raise V2Error(422, "invalid_request", f"{field!r} must be a string", {"field": field})
    name = value.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in "\"'<>|*?:")[:255].strip(" .")
    return name or "file"


def _content_type(value: Any, name: str) -> str:
    if isinstance(value, str) and _CONTENT_TYPE.match(value.split(";", 1)[0].strip()):
        return value.split(";", 1)[0].strip().lower()
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass
class AssetRecord:
    id: str
    hash: str
    size_bytes: int
    content_type: str
    file_path: str
    created_at: str
    expires_at: str
    used_at: float  # for LRU (epoch seconds)
    job_id: str | None = None

    def to_json(self, base: str, *, created_new: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "hash": self.hash,
            "size_bytes": self.size_bytes,
            "content_type": self.content_type,
            "file_path": self.file_path,
            "created_at": self.created_at,
            "url": f"{base}/assets/{self.id}/content",
            "url_expires_at": self.expires_at,
            "expires_at": self.expires_at,
        }
        if self.job_id is not None:
            body["job_id"] = self.job_id
        if created_new is not None:
            body["created_new"] = created_new
        return body


class AssetStore:
    """Assets on disk under ``root``; thread-safe (writes and hashing run in worker threads)."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        max_asset_bytes: int,
        ttl: float,
        import_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_asset_bytes = max_asset_bytes
        self.ttl = ttl
        self.import_dir = import_dir
        self.pinned: dict[str, int] = {}  # asset id → jobs using it
        self._lock = threading.RLock()
        self._records: dict[str, AssetRecord] = {}
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "records").mkdir(parents=True, exist_ok=True)
        self._load()

    # -- persistence ---------------------------------------------------------------------------

    def _load(self) -> None:
        for path in (self.root / "records").glob("*.json"):
            try:
                rec = AssetRecord(**json.loads(path.read_text(encoding="utf-8")))
                uuid.UUID(rec.id)
                check_hash(rec.hash)
            except (OSError, ValueError, TypeError, V2Error):
                logger.warning("ignoring an unreadable asset record %s", path.name)
                continue
            if self._blob(rec.hash).is_file():
                self._records[rec.id] = rec
        self.cleanup()

    def _blob(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.root / "blobs" / hexd[:2] / hexd

    def _save(self, rec: AssetRecord) -> None:
        atomic_write(self.root / "records" / f"{rec.id}.json", json.dumps(asdict(rec)))

    # -- reading -------------------------------------------------------------------------------

    def get(self, asset_id: str) -> AssetRecord:
        with self._lock:
            rec = self._records.get(asset_id)
            if rec is None or self._expired(rec):
                raise V2Error(404, "not_found", f"no asset {asset_id}", {"field": "id"})
            rec.used_at = now().timestamp()
            return rec

    def by_hash(self, digest: str) -> AssetRecord | None:
        """The upload (no job) holding these bytes, else any record holding them."""
        with self._lock:
            found = [r for r in self._records.values() if r.hash == digest and not self._expired(r)]
            found.sort(key=lambda r: (r.job_id is not None, r.created_at))
            return found[0] if found else None

    def path(self, rec: AssetRecord) -> Path:
        return self._blob(rec.hash)

    def read(self, rec: AssetRecord) -> bytes:
        return self._blob(rec.hash).read_bytes()

    # -- writing -------------------------------------------------------------------------------

    def add_stream(
        self,
        stream: IO[bytes],
        *,
        file_path: Any,
        content_type: Any,
        expected_hash: str | None = None,
        job_id: str | None = None,
    ) -> tuple[AssetRecord, bool]:
        """Store the bytes of ``stream`` (capped at ``max_asset_bytes``); ``(record, created_new)``."""
        name = safe_name(file_path)
        hasher = blake3()
        size = 0
        fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=self.root / "blobs")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > self.max_asset_bytes:
                        raise V2Error(
                            413,
                            "payload_too_large",
                            f"the file is larger than this service's {self.max_asset_bytes}-byte "
                            "asset limit",
                            {"field": "file"},
                        )
                    hasher.update(chunk)
                    out.write(chunk)
            digest = "blake3:" + hasher.hexdigest()
            if expected_hash is not None and expected_hash != digest:
                raise V2Error(
                    409,
                    "hash_mismatch",
                    "'expected_hash' is not the blake3 of the bytes received",
                    {"field": "expected_hash", "received": digest},
                )
            return self._commit(tmp, digest, size, name, _content_type(content_type, name), job_id)
        finally:
            tmp.unlink(missing_ok=True)

    def add_bytes(
        self, data: bytes, *, file_path: str, content_type: str, job_id: str | None
    ) -> AssetRecord:
        import io

        return self.add_stream(
            io.BytesIO(data), file_path=file_path, content_type=content_type, job_id=job_id
        )[0]

    def _commit(
        self, tmp: Path, digest: str, size: int, name: str, content_type: str, job_id: str | None
    ) -> tuple[AssetRecord, bool]:
        with self._lock:
            if job_id is None:
                existing = self.by_hash(digest)
                if existing is not None and existing.job_id is None:
                    self._extend(existing)
                    return existing, False
            blob = self._blob(digest)
            if not blob.is_file():
                self._make_room(size)
                blob.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, blob)
            rec = self._new_record(digest, size, name, content_type, job_id)
            return rec, True

    def _new_record(
        self, digest: str, size: int, name: str, content_type: str, job_id: str | None
    ) -> AssetRecord:
        moment = now()
        rec = AssetRecord(
            id=str(uuid.uuid4()),
            hash=digest,
            size_bytes=size,
            content_type=content_type,
            file_path=name,
            created_at=iso(moment) or "",
            expires_at=iso(moment + timedelta(seconds=self.ttl)) or "",
            used_at=moment.timestamp(),
            job_id=job_id,
        )
        self._records[rec.id] = rec
        self._save(rec)
        return rec

    def _extend(self, rec: AssetRecord) -> None:
        """Re-referencing bytes extends their retention, never shortens it."""
        later = iso(now() + timedelta(seconds=self.ttl)) or ""
        if later > rec.expires_at:
            rec.expires_at = later
        rec.used_at = now().timestamp()
        self._save(rec)

    def from_hash(self, digest: str) -> AssetRecord:
        with self._lock:
            rec = self.by_hash(digest)
            if rec is None:
                raise V2Error(
                    404, "blob_not_found", "no stored bytes have this hash", {"field": "hash"}
                )
            self._extend(rec)
            return rec

    def from_path(self, raw: Any, *, file_path: Any, content_type: Any) -> tuple[AssetRecord, bool]:
        """Copy in a file from the import folder (and nowhere else)."""
        if self.import_dir is None:
            raise V2Error(
                404,
                "blob_not_found",
                "from-path is off: this service has no import folder "
                "(COMFYPACK_V2_IMPORT_DIR), so 'path' names nothing it may read; upload the file",
                {"field": "path"},
            )
        if not isinstance(raw, str) or not raw or "\x00" in raw or len(raw) > 4096:
            raise V2Error(
                422,
                "invalid_request",
                "'path' must be a file name under the import folder",
                {"field": "path"},
            )
        root = self.import_dir.resolve()
        candidate = Path(raw) if os.path.isabs(raw) else root / raw
        refused = V2Error(
            404,
            "blob_not_found",
            "'path' is not a regular file in the service's import folder",
            {"field": "path"},
        )
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            raise refused from None
        if not resolved.is_relative_to(root) or resolved == root:
            raise refused
        try:
            fd = os.open(
                resolved, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
            )
        except OSError:
            raise refused from None
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, a FIFO, a device
            os.close(fd)
            raise refused
        with os.fdopen(fd, "rb") as f:
            real = (
                Path(os.path.realpath(f"/proc/self/fd/{fd}"))
                if Path("/proc/self/fd").is_dir()
                else resolved
            )
            if not real.is_relative_to(root):  # swapped for a link between resolve and open
                raise refused
            return self.add_stream(
                f,
                file_path=file_path if file_path is not None else resolved.name,
                content_type=content_type,
            )

    def delete(self, asset_id: str) -> None:
        with self._lock:
            rec = self.get(asset_id)
            self._drop(rec)

    def _drop(self, rec: AssetRecord) -> None:
        self._records.pop(rec.id, None)
        (self.root / "records" / f"{rec.id}.json").unlink(missing_ok=True)
        if not any(r.hash == rec.hash for r in self._records.values()):
            self._blob(rec.hash).unlink(missing_ok=True)

    # -- cleanup -------------------------------------------------------------------------------

    def _expired(self, rec: AssetRecord) -> bool:
        return rec.expires_at < (iso(now()) or "") and rec.id not in self.pinned

    def stored_bytes(self) -> int:
        with self._lock:
            return sum({r.hash: r.size_bytes for r in self._records.values()}.values())

    def cleanup(self) -> int:
        """Drop expired records (and blobs no record holds); returns how many."""
        with self._lock:
            gone = [r for r in self._records.values() if self._expired(r)]
            for rec in gone:
                self._drop(rec)
            return len(gone)

    def _make_room(self, size: int) -> None:
        self.cleanup()
        if size > self.max_bytes:
            raise V2Error(
                413,
                "payload_too_large",
                f"the file is larger than the asset store ({self.max_bytes} bytes)",
                {"field": "file"},
            )
        by_use = sorted(
            (r for r in self._records.values() if r.id not in self.pinned), key=lambda r: r.used_at
        )
        while self.stored_bytes() + size > self.max_bytes and by_use:
            self._drop(by_use.pop(0))
        if self.stored_bytes() + size > self.max_bytes:
            raise V2Error(
                507,
                "insufficient_storage",
                "the asset store is full of assets jobs are using; retry when they finish",
                headers={"Retry-After": "30"},
            )

    @contextlib.contextmanager
    def pin(self, ids: list[str]) -> Iterator[None]:
        """Keep these assets (a job's inputs) from expiry and eviction while the block runs."""
        with self._lock:
            for i in ids:
                self.pinned[i] = self.pinned.get(i, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for i in ids:
                    self.pinned[i] -= 1
                    if not self.pinned[i]:
                        del self.pinned[i]
