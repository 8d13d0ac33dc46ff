"""Media files on disk and their rows (tables: media_content, local_media,
media_thumbnails; see node/storage/migrations/0003_media.sql).

Layout under ``DATA_DIR/media/``:

- ``content/<h[0:2]>/<h[2:4]>/<h>``: the bytes of an upload, named by ``h``, the hex
  SHA-256 of the bytes (content-addressed: identical uploads share a file, and no
  string from a client is ever part of a path);
- ``thumbnails/<h[0:2]>/<h>/<W>x<H>-<method>[-animated]``: cached thumbnails;
- ``tmp/``: uploads and thumbnails being written.

Durability (an acknowledged upload survives a crash): the bytes go to a temp file in
``tmp/``, which is fsynced, renamed into ``content/`` and the directory fsynced, all
BEFORE the row is committed (itself fsynced, see node/storage/database.py). A crash
in between leaves a file without a row, which :meth:`MediaStore.start` removes, as it
removes everything left in ``tmp/``. Thumbnails are a cache: written by rename
without fsync, and a file whose size disagrees with its row is made again.

File I/O runs in worker threads so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import aiosqlite

from node.storage.database import Database

log = logging.getLogger(__name__)

CONTENT_DIR = "content"
THUMBNAIL_DIR = "thumbnails"
TMP_DIR = "tmp"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Buffered bytes handed to the writer thread at once.
FLUSH_BYTES = 1024 * 1024

FillResult = Literal["ok", "missing", "taken"]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """A row of local_media, with its file's size when uploaded."""

    media_id: str
    user_id: str
    created_ts: int
    unused_expires_ts: int | None
    sha256: str | None
    content_type: str | None
    filename: str | None
    size: int | None

    @property
    def uploaded(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True, slots=True)
class ThumbnailKey:
    """A cached thumbnail: the requested box and method, and whether it is animated."""

    width: int
    height: int
    method: str
    animated: bool

    @property
    def file_name(self) -> str:
        return f"{self.width}x{self.height}-{self.method}" + ("-animated" if self.animated else "")


@dataclass(frozen=True, slots=True)
class StoredThumbnail:
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size: int


class UploadSink:
    """A temp file receiving an upload's body: hashed and counted as it is written."""

    def __init__(self, tmp_dir: Path, content_root: Path) -> None:
        self._tmp_dir = tmp_dir
        self._content_root = content_root
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self.size = 0

    async def open(self) -> None:
        self._file, self._path = await asyncio.to_thread(self._open_sync)

    def _open_sync(self) -> tuple[IO[bytes], Path]:
        fd, name = tempfile.mkstemp(dir=self._tmp_dir, prefix="upload-")
        return os.fdopen(fd, "wb"), Path(name)

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self.size += len(chunk)
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if not self._buffer:
            return
        data, self._buffer = bytes(self._buffer), bytearray()
        await asyncio.to_thread(self._write_sync, data)

    def _write_sync(self, data: bytes) -> None:
        assert self._file is not None
        self._hash.update(data)
        self._file.write(data)

    async def finish(self) -> StoredFile:
        """Make the bytes durable under their hash; the temp file is gone afterwards."""
        await self._flush()
        return await asyncio.to_thread(self._finish_sync)

    def _finish_sync(self) -> StoredFile:
        assert self._file is not None and self._path is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        digest = self._hash.hexdigest()
        dest = content_path(self._content_root, digest)
        make_dirs(dest.parent, self._content_root)
        os.replace(self._path, dest)
        self._path = None
        fsync_dir(dest.parent)
        return StoredFile(digest, self.size)

    async def abort(self) -> None:
        if self._file is None and self._path is None:
            return
        await asyncio.to_thread(self._abort_sync)

    def _abort_sync(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


def content_path(content_root: Path, sha256: str) -> Path:
    if not _SHA256_RE.fullmatch(sha256):  # only ever our own digests; belt and braces
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return content_root / sha256[0:2] / sha256[2:4] / sha256


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, root: Path) -> None:
    """Create ``path`` (inside ``root``) and fsync the parent of each new directory."""
    missing = []
    p = path
    while p != root and not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        fsync_dir(d.parent)


class MediaStore:
    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root
        self.content_root = root / CONTENT_DIR
        self.thumbnail_root = root / THUMBNAIL_DIR
        self.tmp_dir = root / TMP_DIR

    async def start(self) -> None:
        """Create the directories; remove temp files and files no row points to."""
        await asyncio.to_thread(self._make_root)
        rows = await self.db.fetchall("SELECT sha256 FROM media_content")
        known = {r["sha256"] for r in rows}
        removed = await asyncio.to_thread(self._sweep, known)
        if removed:
            log.info("removed %d media files left by an interrupted upload", removed)

    def _make_root(self) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for d in (self.root, self.content_root, self.thumbnail_root, self.tmp_dir):
            make_dirs(d, self.root.parent)

    def _sweep(self, known: set[str]) -> int:
        removed = 0
        for entry in self.tmp_dir.iterdir():
            if entry.is_file():
                entry.unlink(missing_ok=True)
                removed += 1
        for path in self.content_root.glob("??/??/*"):
            if _SHA256_RE.fullmatch(path.name) and path.name not in known and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- files ---------------------------------------------------------------------------

    def content_path(self, sha256: str) -> Path:
        return content_path(self.content_root, sha256)

    def thumbnail_path(self, sha256: str, key: ThumbnailKey) -> Path:
        self.content_path(sha256)  # checks the digest
        return self.thumbnail_root / sha256[0:2] / sha256 / key.file_name

    async def new_upload(self) -> UploadSink:
        sink = UploadSink(self.tmp_dir, self.content_root)
        await sink.open()
        return sink

    async def file_size(self, path: Path) -> int | None:
        def size() -> int | None:
            try:
                return path.stat().st_size
            except OSError:
                return None

        return await asyncio.to_thread(size)

    # -- local media rows ------------------------------------------------------------------

    async def get_local(self, media_id: str) -> LocalMedia | None:
        row = await self.db.fetchone(
            "SELECT m.media_id, m.user_id, m.created_ts, m.unused_expires_ts, m.sha256,"
            " m.content_type, m.filename, c.size FROM local_media m"
            " LEFT JOIN media_content c ON c.sha256 = m.sha256 WHERE m.media_id = ?",
            (media_id,),
        )
        return LocalMedia(*tuple(row)) if row else None

    async def add_upload(
        self,
        media_id: str,
        user_id: str,
        stored: StoredFile,
        content_type: str | None,
        filename: str | None,
    ) -> bool:
        """Record a finished POST /upload; True when its bytes are new to the store."""

        async def txn(conn: aiosqlite.Connection) -> bool:
            ts = now_ms()
            new = await _add_content_txn(conn, stored, ts)
            await conn.execute(
                "INSERT INTO local_media (media_id, user_id, created_ts, sha256, content_type,"
                " filename, uploaded_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (media_id, user_id, ts, stored.sha256, content_type, filename, ts),
            )
            return new

        return await self.db.write(txn)

    async def create_pending(self, media_id: str, user_id: str, expires_ts: int) -> None:
        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO local_media (media_id, user_id, created_ts, unused_expires_ts)"
                " VALUES (?, ?, ?, ?)",
                (media_id, user_id, now_ms(), expires_ts),
            )

        await self.db.write(txn)

    async def count_pending(self, user_id: str, now: int) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM local_media WHERE user_id = ? AND sha256 IS NULL"
            " AND unused_expires_ts > ?",
            (user_id, now),
        )
        return int(row[0]) if row else 0

    async def fill_pending(
        self,
        media_id: str,
        user_id: str,
        stored: StoredFile,
        content_type: str | None,
        filename: str | None,
    ) -> tuple[FillResult, bool]:
        """Attach uploaded bytes to a media ID made by /create. Returns the outcome
        ("ok", "missing": gone or expired, "taken": already has content) and whether
        the bytes are new to the store."""

        async def txn(conn: aiosqlite.Connection) -> tuple[FillResult, bool]:
            ts = now_ms()
            async with conn.execute(
                "SELECT sha256, unused_expires_ts FROM local_media"
                " WHERE media_id = ? AND user_id = ?",
                (media_id, user_id),
            ) as cur:
                row = await cur.fetchone()
            if row is None or (row["sha256"] is None and (row["unused_expires_ts"] or 0) <= ts):
                return "missing", False
            if row["sha256"] is not None:
                return "taken", False
            new = await _add_content_txn(conn, stored, ts)
            await conn.execute(
                "UPDATE local_media SET sha256 = ?, content_type = ?, filename = ?,"
                " uploaded_ts = ?, unused_expires_ts = NULL WHERE media_id = ?",
                (stored.sha256, content_type, filename, ts, media_id),
            )
            return "ok", new

        return await self.db.write(txn)

    async def delete_expired_pending(self, now: int) -> None:
        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "DELETE FROM local_media WHERE sha256 IS NULL AND unused_expires_ts <= ?", (now,)
            )

        await self.db.write(txn)

    async def media_bytes(self) -> int:
        """Bytes of all media files and cached thumbnails."""
        row = await self.db.fetchone(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM media_content)"
            " + (SELECT COALESCE(SUM(size), 0) FROM media_thumbnails)"
        )
        return int(row[0]) if row else 0

    # -- thumbnails ------------------------------------------------------------------------

    async def get_thumbnail(self, sha256: str, key: ThumbnailKey) -> StoredThumbnail | None:
        row = await self.db.fetchone(
            "SELECT content_type, size FROM media_thumbnails WHERE sha256 = ? AND width = ?"
            " AND height = ? AND method = ? AND animated = ?",
            (sha256, key.width, key.height, key.method, int(key.animated)),
        )
        return StoredThumbnail(row["content_type"], row["size"]) if row else None

    async def put_thumbnail(
        self, sha256: str, key: ThumbnailKey, data: bytes, content_type: str
    ) -> int:
        """Cache a thumbnail; returns how many bytes the store grew by."""
        path = self.thumbnail_path(sha256, key)

        def write() -> None:
            make_dirs(path.parent, self.root)
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="thumb-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(name, path)

        await asyncio.to_thread(write)
        old = await self.get_thumbnail(sha256, key)

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT OR REPLACE INTO media_thumbnails (sha256, width, height, method,"
                " animated, content_type, size, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sha256,
                    key.width,
                    key.height,
                    key.method,
                    int(key.animated),
                    content_type,
                    len(data),
                    now_ms(),
                ),
            )

        await self.db.write(txn)
        return len(data) - (old.size if old else 0)


async def _add_content_txn(conn: aiosqlite.Connection, stored: StoredFile, ts: int) -> bool:
    cur = await conn.execute(
        "INSERT OR IGNORE INTO media_content (sha256, size, created_ts) VALUES (?, ?, ?)",
        (stored.sha256, stored.size, ts),
    )
    return cur.rowcount == 1
