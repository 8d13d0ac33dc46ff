"""The full-text index filled after the commit (node/search/indexer.py, migration 0021):
the watermark, events deleted before they were indexed, historical events, start-up."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from node.search.indexer import BATCH, SearchIndexer, index_batch, pending
from node.storage.database import Database, bundled_migrations
from node.sync.notifier import Notifier

ROOM = "!room:x"


def _insert(conn: sqlite3.Connection, event_id: str, body: str, stream: int | None = None) -> int:
    conn.execute(
        "INSERT OR IGNORE INTO rooms (room_id, room_version, created_ts) VALUES (?, '10', 0)",
        (ROOM,),
    )
    pdu = {"type": "m.room.message", "room_id": ROOM, "content": {"body": body}}
    cur = conn.execute(
        "INSERT INTO events (stream_ordering, event_id, room_id, type, sender, depth,"
        " origin_server_ts, received_ts, json) VALUES (?, ?, ?, 'm.room.message', '@a:x', 1,"
        " 0, 0, ?)",
        (stream, event_id, ROOM, json.dumps(pdu).encode()),
    )
    return int(cur.lastrowid or 0)


async def add(db: Database, event_id: str, body: str, stream: int | None = None) -> int:
    return await db.write_sync(lambda c: _insert(c, event_id, body, stream))


async def matches(db: Database, word: str) -> list[int]:
    rows = await db.fetchall(
        "SELECT rowid FROM event_search WHERE event_search MATCH ? ORDER BY rowid", (word,)
    )
    return [r[0] for r in rows]


async def integrity(db: Database) -> None:
    """FTS5's own check of an external-content index against its content, every event
    (so only when caught up): raises on any mismatch."""
    await db.write_sync(
        lambda c: c.execute(
            "INSERT INTO event_search (event_search, rank) VALUES ('integrity-check', 1)"
        )
    )


async def test_storing_does_not_index_and_the_indexer_catches_up(db: Database) -> None:
    first = await add(db, "$a", "martian landing")
    assert await matches(db, "martian") == []
    assert (await db.read_sync(pending))[1] == 1
    indexer = SearchIndexer(db, Notifier())
    assert await indexer.catch_up() == 1
    assert await matches(db, "martian") == [first]
    assert await db.read_sync(pending) == (first, 0)
    second = await add(db, "$b", "martians again")
    assert await indexer.catch_up() == 1
    assert await matches(db, "martian") == [first, second]
    assert await indexer.catch_up() == 0  # nothing new: nothing done
    await integrity(db)


async def test_an_event_deleted_before_it_was_indexed_leaves_the_index_whole(
    db: Database,
) -> None:
    await add(db, "$kept", "martian one")
    await SearchIndexer(db, Notifier()).catch_up()
    await add(db, "$gone", "martian two")
    # Deleted while still above the watermark (a cached event evicted, an outlier
    # replaced): the delete trigger must not tell FTS5 to remove what it never had.
    await db.write_sync(lambda c: c.execute("DELETE FROM events WHERE event_id = '$gone'"))
    await db.write_sync(lambda c: c.execute("DELETE FROM events WHERE event_id = '$kept'"))
    await integrity(db)
    await SearchIndexer(db, Notifier()).catch_up()
    assert await matches(db, "martian") == []
    await integrity(db)


async def test_historical_events_are_indexed_as_they_are_stored(db: Database) -> None:
    await add(db, "$new", "present")
    old = await add(db, "$old", "martian history", stream=-5)  # backfilled
    assert old == -5
    assert await matches(db, "martian") == [-5]
    await db.write_sync(lambda c: c.execute("DELETE FROM events WHERE event_id = '$old'"))
    assert await matches(db, "martian") == []
    await SearchIndexer(db, Notifier()).catch_up()  # the check compares with every event
    assert await matches(db, "present") == [1]
    await integrity(db)


async def test_start_up_indexes_what_was_left_in_batches(db: Database) -> None:
    count = BATCH + 7

    def many(conn: sqlite3.Connection) -> None:
        for i in range(count):
            _insert(conn, f"$e{i}", f"reading {i}")

    await db.write_sync(many)
    # One batch at a time, the watermark after each.
    assert await db.write_sync(index_batch) == BATCH
    upto, left = await db.read_sync(pending)
    assert left == 7
    assert len(await matches(db, "reading")) == BATCH
    indexer = SearchIndexer(db, Notifier())
    await indexer._start_up()
    assert (await db.read_sync(pending))[1] == 0
    assert len(await matches(db, "reading")) == count
    assert upto < (await db.read_sync(pending))[0]
    await integrity(db)


async def test_the_migration_starts_the_watermark_after_what_the_triggers_indexed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    before = [m for m in bundled_migrations() if m.version < 21]
    old = await Database.open(path, migrations=before)
    try:
        stream = await add(old, "$e", "martian before")  # indexed by the old trigger
    finally:
        await old.close()
    db = await Database.open(path)
    try:
        assert await db.read_sync(pending) == (stream, 0)
        assert await matches(db, "martian") == [stream]
        newer = await add(db, "$f", "martian after")
        assert await matches(db, "martian") == [stream]
        await SearchIndexer(db, Notifier()).catch_up()
        assert await matches(db, "martian") == [stream, newer]
        await integrity(db)
    finally:
        await db.close()


async def test_the_running_indexer_follows_the_events_stream(db: Database) -> None:
    notifier = Notifier()
    indexer = SearchIndexer(db, notifier)
    indexer.start()
    try:
        stream = await add(db, "$a", "martian")
        notifier.notify("events", stream)
        for _ in range(100):  # DELAY_S is 0.2 s; bounded wait
            if await matches(db, "martian"):
                break
            await asyncio.sleep(0.05)
        assert await matches(db, "martian") == [stream]
    finally:
        await indexer.close()
