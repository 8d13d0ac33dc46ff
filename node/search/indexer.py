"""Filling the full-text index after events are committed (migration 0021).

Storing an event does not index it: the durable transaction of a send stays free of
FTS5 work. The indexer takes every event stored above the watermark
(``search_position.upto``) in stream order, a batch at a time, and moves the
watermark in the same transaction as the index rows, so the two never disagree, not
even after a crash. Those transactions are not fsynced: the index is derived from the
events and a lost tail is indexed again from the watermark.

It runs shortly after events are stored (a burst of sends is indexed in one
transaction), at start-up for whatever an older version or a crash left, and before
every search (:meth:`SearchIndexer.catch_up`), so a search always sees every event
stored before it was asked. Historical (backfilled) events, stored below every
position, are indexed by a trigger as they are stored.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from node.storage.database import Database
from node.sync.notifier import Notifier
from node.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BATCH = 500  # events per indexing transaction
DELAY_S = 0.2  # after events are stored, wait this long so that a burst is one batch
IDLE_WAIT_S = 3600.0


def pending(conn: sqlite3.Connection) -> tuple[int, int]:
    """(watermark, events stored above it)."""
    (upto,) = conn.execute("SELECT upto FROM search_position WHERE id = 1").fetchone()
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM events WHERE stream_ordering > ?", (upto,)
    ).fetchone()
    return int(upto), int(count)


def index_batch(conn: sqlite3.Connection, limit: int = BATCH) -> int:
    """Index up to ``limit`` events above the watermark and move it past them (a plain
    function for the writer's thread). Returns how many events it looked at: fewer than
    ``limit`` means the index is caught up."""
    (upto,) = conn.execute("SELECT upto FROM search_position WHERE id = 1").fetchone()
    newest, count = conn.execute(
        "SELECT MAX(stream_ordering), COUNT(*) FROM (SELECT stream_ordering FROM events"
        " WHERE stream_ordering > ? ORDER BY stream_ordering LIMIT ?)",
        (upto, limit),
    ).fetchone()
    if not count:
        return 0
    # The view holds only the searchable types; its range is a rowid range of events.
    conn.execute(
        "INSERT INTO event_search (rowid, value) SELECT stream_ordering, value"
        " FROM event_search_source WHERE stream_ordering > ? AND stream_ordering <= ?",
        (upto, newest),
    )
    conn.execute("UPDATE search_position SET upto = ? WHERE id = 1", (newest,))
    return int(count)


class SearchIndexer:
    def __init__(self, db: Database, notifier: Notifier) -> None:
        self.db = db
        self.notifier = notifier
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="search-indexer")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def catch_up(self, total: int | None = None) -> int:
        """Index every event stored so far; returns how many were looked at. With
        ``total`` (the events waiting, when known), log progress after each batch."""
        async with self._lock:
            done = 0
            while True:
                n = await self.db.write_sync(index_batch, durable=False)
                done += n
                if total is not None and n:
                    log.info("search index: %d of %d events indexed", min(done, total), total)
                if n < BATCH:
                    return done

    async def _run(self) -> None:
        try:
            await self._start_up()
            seen = self.notifier.current_token()
            while not self.notifier.closed:
                token = await self.notifier.wait_for_change(seen, IDLE_WAIT_S, background=True)
                if token.get("events") != seen.get("events"):
                    await asyncio.sleep(DELAY_S)
                    token = self.notifier.current_token()
                    await self.catch_up()
                seen = token
        except asyncio.CancelledError:
            raise
        except Exception:  # the next search catches up; nothing is lost
            log.exception("search indexer stopped")

    async def _start_up(self) -> None:
        """What a crash or an older version left unindexed, with progress when it is
        more than one batch."""
        upto, count = await self.db.read_sync(pending)
        if count <= BATCH:
            await self.catch_up()
            return
        log.info("search index: %d events to index (from position %d)", count, upto)
        await self.catch_up(total=count)
