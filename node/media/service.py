"""The content repository's logic; the handlers in node/client_api/media.py only parse
and reply.

Spec: content/client-server-api/modules/content_repo.md; content-repo.yaml
(POST /_matrix/media/v3/upload, POST /_matrix/media/v1/create,
PUT /_matrix/media/v3/upload/{serverName}/{mediaId}); authed-content-repo.yaml
(GET /_matrix/client/v1/media/config, /download, /thumbnail).

Limits, with the errors the spec names for them:

- one upload: ``media.max_upload_bytes`` -> 413 M_TOO_LARGE, checked against
  Content-Length before reading and again while the body streams to disk (the body
  is never held in memory);
- the whole store (database files + media + cached thumbnails):
  ``history.max_store_bytes`` -> 403 M_FORBIDDEN, the upload endpoints' code for "the
  user has reached a quota for uploaded content" (M_RESOURCE_LIMIT_EXCEEDED would
  need an ``admin_contact``; on a single-user node the user is the admin);
- pending media IDs from /create: 32 per user at once, unused ones expire after 24
  hours -> 429 M_LIMIT_EXCEEDED;
- waiting for a pending upload on download: ``timeout_ms``, default 20 s, at most
  60 s -> 504 M_NOT_YET_UPLOADED.

Remote media (an ``mxc://`` of another server) needs federation, which this node does
not offer yet: 404 M_NOT_FOUND saying so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from node.config import Config
from node.errors import MatrixError, forbidden, not_found
from node.media import thumbnails
from node.media.disposition import DEFAULT_CONTENT_TYPE, content_disposition
from node.media.mxc import MXC, new_media_id
from node.media.store import LocalMedia, MediaStore, StoredFile, ThumbnailKey, now_ms
from node.storage.database import Database

log = logging.getLogger(__name__)

MEDIA_DIR = "media"
PENDING_TTL_MS = 24 * 60 * 60 * 1000
MAX_PENDING_PER_USER = 32
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 60_000
# Thumbnails made at once: decoding a large image takes memory a small board lacks.
THUMBNAIL_WORKERS = 1


@dataclass(frozen=True, slots=True)
class Download:
    """What a download or thumbnail answers: a file on disk or bytes, and its headers."""

    content_type: str
    disposition: str
    path: Path | None = None
    body: bytes | None = None


class _Arrivals:
    """Downloads waiting for a pending upload, woken when its content arrives."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[asyncio.Event, int]] = {}

    @contextmanager
    def watch(self, media_id: str) -> Iterator[asyncio.Event]:
        event, count = self._waiting.get(media_id, (asyncio.Event(), 0))
        self._waiting[media_id] = (event, count + 1)
        try:
            yield event
        finally:
            event, count = self._waiting[media_id]
            if count == 1:
                del self._waiting[media_id]
            else:
                self._waiting[media_id] = (event, count - 1)

    def arrived(self, media_id: str) -> None:
        entry = self._waiting.get(media_id)
        if entry is not None:
            entry[0].set()


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


class MediaService:
    def __init__(self, config: Config, db: Database) -> None:
        self.server_name = config.server_name
        self.max_upload_bytes = config.media.max_upload_bytes
        self.max_store_bytes = config.history.max_store_bytes
        self.store = MediaStore(db, config.path(MEDIA_DIR))
        self._database_path = config.database_path
        self._media_bytes = 0  # files + thumbnails, kept in step with the rows
        self._in_flight = 0  # bytes of uploads being received
        self._arrivals = _Arrivals()
        self._thumbnailer = asyncio.Semaphore(THUMBNAIL_WORKERS)

    async def start(self) -> None:
        await self.store.start()
        await self.store.delete_expired_pending(now_ms())
        self._media_bytes = await self.store.media_bytes()

    def stored_bytes(self) -> int:
        """Bytes of the media files and cached thumbnails (node/history counts them
        against history.max_store_bytes)."""
        return self._media_bytes

    def media_config(self) -> dict[str, int]:
        """GET /_matrix/client/v1/media/config"""
        return {"m.upload.size": self.max_upload_bytes}

    # -- uploads ---------------------------------------------------------------------------

    async def upload(
        self,
        user_id: str,
        body: AsyncIterable[bytes],
        *,
        content_length: int | None,
        content_type: str | None,
        filename: str | None,
    ) -> str:
        """POST /_matrix/media/v3/upload: store the bytes; return the new mxc:// URI."""
        media_id = new_media_id()

        async def commit(stored: StoredFile) -> bool:
            return await self.store.add_upload(media_id, user_id, stored, content_type, filename)

        await self._receive(body, content_length, commit)
        return str(MXC(self.server_name, media_id))

    async def create(self, user_id: str) -> tuple[str, int]:
        """POST /_matrix/media/v1/create: a media ID to upload to later, and its expiry."""
        now = now_ms()
        if await self.store.count_pending(user_id, now) >= MAX_PENDING_PER_USER:
            raise MatrixError(
                429,
                "M_LIMIT_EXCEEDED",
                f"Too many pending uploads: at most {MAX_PENDING_PER_USER} media IDs may wait"
                " for their content at once",
            )
        media_id = new_media_id()
        expires = now + PENDING_TTL_MS
        await self.store.create_pending(media_id, user_id, expires)
        return str(MXC(self.server_name, media_id)), expires

    async def upload_to(
        self,
        user_id: str,
        mxc: MXC,
        body: AsyncIterable[bytes],
        *,
        content_length: int | None,
        content_type: str | None,
        filename: str | None,
    ) -> None:
        """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"""
        if mxc.server_name != self.server_name:
            raise not_found(f"Unknown media ID: {mxc} was not created on this server")
        media = await self.store.get_local(mxc.media_id)
        if media is None:
            raise not_found("Unknown media ID: it was not created with /_matrix/media/v1/create")
        if media.user_id != user_id:
            raise forbidden("Only the user who created this media ID may upload to it")
        if media.uploaded:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
        if _expired(media, now_ms()):
            raise not_found("Unknown media ID: it expired before its content was uploaded")

        async def commit(stored: StoredFile) -> bool:
            outcome, new = await self.store.fill_pending(
                mxc.media_id, user_id, stored, content_type, filename
            )
            # A refused upload's file stays until the next start's sweep: another upload
            # of the same bytes may be about to commit a row for it.
            if outcome == "taken":
                raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
            if outcome == "missing":
                raise not_found("Unknown media ID: it expired before its content was uploaded")
            return new

        await self._receive(body, content_length, commit)
        self._arrivals.arrived(mxc.media_id)

    async def _receive(
        self,
        body: AsyncIterable[bytes],
        content_length: int | None,
        commit: Callable[[StoredFile], Awaitable[bool]],
    ) -> None:
        """Stream ``body`` to a durable file under the limits, then ``commit`` its row."""
        db_bytes = await asyncio.to_thread(self._database_bytes)
        if content_length is not None:
            self._check_limits(content_length, content_length, db_bytes)
        sink = await self.store.new_upload()
        reserved = 0
        try:
            try:
                async for chunk in body:
                    self._check_limits(sink.size + len(chunk), len(chunk), db_bytes)
                    self._in_flight += len(chunk)
                    reserved += len(chunk)
                    await sink.write(chunk)
                stored = await sink.finish()
            except BaseException:
                await sink.abort()
                raise
            if await commit(stored):
                self._media_bytes += stored.size
        finally:
            self._in_flight -= reserved

    def _check_limits(self, size: int, adding: int, db_bytes: int) -> None:
        """An upload of ``size`` bytes so far is about to grow the store by ``adding``."""
        if size > self.max_upload_bytes:
            raise MatrixError(
                413,
                "M_TOO_LARGE",
                f"Cannot upload files larger than {_human(self.max_upload_bytes)}"
                " (media.max_upload_bytes)",
            )
        used = db_bytes + self._media_bytes + self._in_flight
        if used + adding > self.max_store_bytes:
            raise forbidden(
                f"Upload refused: this node's store is full ({_human(used)} of"
                f" {_human(self.max_store_bytes)} used by events and media;"
                " history.max_store_bytes)"
            )

    def _database_bytes(self) -> int:
        """The database and its -wal and -shm files, as `croft status` counts them."""
        db, total = self._database_path, 0
        for p in db.parent.glob(db.name + "*"):
            try:
                total += p.stat().st_size
            except OSError:  # a -wal file may vanish at a checkpoint
                continue
        return total

    # -- downloads -------------------------------------------------------------------------

    async def download(
        self, mxc: MXC, *, filename: str | None = None, timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> Download:
        """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"""
        media = await self._uploaded(mxc, timeout_ms)
        assert media.sha256 is not None
        path = self.store.content_path(media.sha256)
        if await self.store.file_size(path) is None:
            log.error("media %s: its file %s is missing", mxc, path)
            raise not_found("The content of this media is missing from the store")
        content_type = media.content_type or DEFAULT_CONTENT_TYPE
        return Download(
            content_type, content_disposition(content_type, filename or media.filename), path
        )

    async def thumbnail(
        self,
        mxc: MXC,
        width: int,
        height: int,
        method: str,
        *,
        animated: bool = False,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> Download:
        """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"""
        media = await self._uploaded(mxc, timeout_ms)
        assert media.sha256 is not None and media.size is not None
        if media.size > thumbnails.MAX_SOURCE_BYTES:
            raise MatrixError(413, "M_TOO_LARGE", "Content is too large to thumbnail")
        sha = media.sha256
        box = thumbnails.serving_box(width, height, method)
        key = ThumbnailKey(box[0], box[1], method, animated)
        cached = await self._cached_thumbnail(sha, key)
        if cached is not None:
            return cached
        async with self._thumbnailer:
            cached = await self._cached_thumbnail(sha, key)  # made while we waited?
            if cached is not None:
                return cached
            source = self.store.content_path(sha)
            try:
                made = await asyncio.to_thread(
                    thumbnails.make_thumbnail, source, box, method, animated
                )
            except thumbnails.TooLargeToThumbnail as e:
                raise MatrixError(413, "M_TOO_LARGE", str(e)) from None
            except thumbnails.CannotThumbnail as e:
                raise MatrixError(
                    400, "M_UNKNOWN", f"Cannot generate thumbnails for the requested content: {e}"
                ) from None
            if isinstance(made, thumbnails.Original):
                return _thumbnail_download(made.content_type, path=source)
            if await self._has_room_for(len(made.data)):
                self._media_bytes += await self.store.put_thumbnail(
                    sha, key, made.data, made.content_type
                )
            return _thumbnail_download(made.content_type, body=made.data)

    async def _cached_thumbnail(self, sha: str, key: ThumbnailKey) -> Download | None:
        row = await self.store.get_thumbnail(sha, key)
        if row is None:
            return None
        path = self.store.thumbnail_path(sha, key)
        if await self.store.file_size(path) != row.size:
            return None  # lost or torn by a crash: make it again
        return _thumbnail_download(row.content_type, path=path)

    async def _has_room_for(self, size: int) -> bool:
        db_bytes = await asyncio.to_thread(self._database_bytes)
        used = db_bytes + self._media_bytes + self._in_flight
        return used + size <= self.max_store_bytes

    async def _uploaded(self, mxc: MXC, timeout_ms: int) -> LocalMedia:
        """The local media with content, waiting up to ``timeout_ms`` for a pending one."""
        if mxc.server_name != self.server_name:
            raise not_found(
                f"Media from other servers ({mxc.server_name}) needs federation, which this"
                " node does not offer yet"
            )
        with self._arrivals.watch(mxc.media_id) as arrived:
            media = await self.store.get_local(mxc.media_id)
            if media is None or _expired(media, now_ms()):
                raise not_found("Media not found")
            if media.uploaded:
                return media
            timeout = min(max(timeout_ms, 0), MAX_TIMEOUT_MS) / 1000
            deadline = time.monotonic() + timeout
            try:
                await asyncio.wait_for(arrived.wait(), timeout)
            except TimeoutError:
                pass
            media = await self.store.get_local(mxc.media_id)
            if media is None or not media.uploaded:
                waited = max(0.0, timeout - max(0.0, deadline - time.monotonic()))
                raise MatrixError(
                    504,
                    "M_NOT_YET_UPLOADED",
                    f"Content has not yet been uploaded (waited {waited:.1f} s)",
                )
            return media


def _expired(media: LocalMedia, now: int) -> bool:
    return not media.uploaded and (media.unused_expires_ts or 0) <= now


def _thumbnail_download(
    content_type: str, *, path: Path | None = None, body: bytes | None = None
) -> Download:
    # Spec: a thumbnail's Content-Disposition MUST be inline.
    name = thumbnails.thumbnail_filename(content_type)
    return Download(content_type, f'inline; filename="{name}"', path, body)
