"""The database: migrations from the first schema, group commit, failure isolation."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiosqlite
import pytest

from node.storage.database import Database, StorageError, bundled_migrations, schema_version


async def test_fresh_database_has_latest_schema(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    try:
        row = await db.fetchone("PRAGMA user_version")
        assert row is not None and row[0] == bundled_migrations()[-1].version
        row = await db.fetchone("PRAGMA journal_mode")
        assert row is not None and row[0] == "wal"
    finally:
        await db.close()


async def test_upgrade_from_first_schema_keeps_and_derives_data(tmp_path: Path) -> None:
    """A database made by schema 0001 is upgraded in place; its rows survive and the
    tables that later schemas derive from events are filled."""
    path = tmp_path / "old.db"
    first = bundled_migrations()[:1]
    db = await Database.open(path, migrations=first)
    pdus = {
        "$create": {
            "type": "m.room.create",
            "state_key": "",
            "prev_events": [],
            "auth_events": [],
            "content": {"room_version": "12"},
        },
        "$msg": {
            "type": "m.room.message",
            "prev_events": ["$create"],
            "auth_events": ["$create"],
            "content": {"body": "hi"},
        },
    }

    async def txn(conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "INSERT INTO accounts (user_id, password_hash, created_ts) VALUES (?, ?, 1)",
            ("@a:x", "hash"),
        )
        for eid, pdu in pdus.items():
            await conn.execute(
                "INSERT INTO events (event_id, room_id, type, state_key, sender, depth,"
                " origin_server_ts, received_ts, json) VALUES (?, '!r', ?, ?, '@a:x', 1, 1, 1, ?)",
                (eid, pdu["type"], pdu.get("state_key"), json.dumps(pdu).encode()),
            )

    await db.write(txn)
    await db.close()

    db = await Database.open(path)  # all migrations
    try:
        assert (await db.fetchone("PRAGMA user_version"))[0] == bundled_migrations()[-1].version
        assert (await db.fetchone("SELECT user_id FROM accounts"))[0] == "@a:x"
        edges = await db.fetchall("SELECT event_id, prev_event_id FROM event_edges")
        assert [tuple(r) for r in edges] == [("$msg", "$create")]
        ext = await db.fetchall("SELECT event_id FROM forward_extremities")
        assert [r[0] for r in ext] == ["$msg"]
        state = await db.fetchall("SELECT type, event_id FROM current_state")
        assert [tuple(r) for r in state] == [("m.room.create", "$create")]
        stored = await db.fetchone("SELECT json FROM events WHERE event_id = '$msg'")
        assert json.loads(stored[0]) == pdus["$msg"]
    finally:
        await db.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=999")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        await Database.open(path)


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        await Database.open(path)


async def test_concurrent_writes_are_grouped_and_all_committed(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "g.db")
    try:

        async def insert(i: int) -> int:
            async def txn(conn: aiosqlite.Connection) -> int:
                await conn.execute(
                    "INSERT INTO rooms (room_id, room_version, created_ts) VALUES (?, '12', 0)",
                    (f"!r{i}",),
                )
                return i

            return await db.write(txn)

        results = await asyncio.gather(*(insert(i) for i in range(500)))
        assert results == list(range(500))
        assert (await db.fetchone("SELECT COUNT(*) FROM rooms"))[0] == 500
    finally:
        await db.close()


async def test_a_failing_write_does_not_undo_its_neighbours(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "f.db")
    try:

        async def good(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!ok', '12', 0)"
            )

        async def bad(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!bad', '12', 0)"
            )
            raise ValueError("boom")

        outcome = await asyncio.gather(db.write(good), db.write(bad), return_exceptions=True)
        assert outcome[0] is None
        assert isinstance(outcome[1], ValueError)
        rows = await db.fetchall("SELECT room_id FROM rooms")
        assert [r[0] for r in rows] == ["!ok"]
    finally:
        await db.close()


async def test_cancelled_caller_still_commits(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "c.db")
    try:

        async def slow(conn: aiosqlite.Connection) -> None:
            await asyncio.sleep(0.05)
            await conn.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!c', '12', 0)"
            )

        task = asyncio.ensure_future(db.write(slow))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await db.close()  # drains the queue
    db = await Database.open(tmp_path / "c.db")
    try:
        assert (await db.fetchone("SELECT COUNT(*) FROM rooms"))[0] == 1
    finally:
        await db.close()


async def test_schema_version_helper(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "v.db") as conn:
        assert await schema_version(conn) == 0


async def test_plain_function_writes_batch_and_fail_alone(tmp_path: Path) -> None:
    """write_sync jobs run on the writer's thread; queued together they share one
    transaction, and one that raises is rolled back alone."""
    db = await Database.open(tmp_path / "s.db")
    try:

        def insert(room: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
            def job(conn: sqlite3.Connection) -> str:
                conn.execute(
                    "INSERT INTO rooms (room_id, room_version, created_ts) VALUES (?, '12', 0)",
                    (room,),
                )
                if fail:
                    raise ValueError(f"{room} fails")
                return room

            return job

        async def async_insert(conn: aiosqlite.Connection) -> str:
            await conn.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!async', '12', 0)"
            )
            return "!async"

        futures = [db.submit_sync(insert(f"!s{i}", fail=i == 3)) for i in range(6)]
        mixed = asyncio.ensure_future(db.write(async_insert))
        outcome = await asyncio.gather(*futures, mixed, return_exceptions=True)
        assert outcome[:3] == ["!s0", "!s1", "!s2"] and outcome[4:] == ["!s4", "!s5", "!async"]
        assert isinstance(outcome[3], ValueError)
        rows = await db.fetchall("SELECT room_id FROM rooms ORDER BY room_id")
        assert [r[0] for r in rows] == sorted(["!s0", "!s1", "!s2", "!s4", "!s5", "!async"])
        assert await db.write_sync(insert("!one")) == "!one"
    finally:
        await db.close()


async def test_read_sync_sees_one_snapshot(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "r.db")
    try:
        await db.write_sync(
            lambda conn: conn.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!a', '12', 0)"
            )
        )

        def read(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            (n,) = conn.execute("SELECT COUNT(*) FROM rooms").fetchone()
            return n, [r["room_id"] for r in conn.execute("SELECT room_id FROM rooms")]

        assert await db.read_sync(read) == (1, ["!a"])
        row = await db.fetchone("SELECT room_id FROM rooms")
        assert row is not None and row["room_id"] == "!a"
    finally:
        await db.close()


async def test_a_closed_database_refuses_writes(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "x.db")
    await db.close()
    with pytest.raises(StorageError):
        db.submit_sync(lambda conn: None)


async def test_a_plain_write_alone_that_fails_leaves_nothing(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "one.db")
    try:

        def bad(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!x', '12', 0)"
            )
            raise ValueError("alone and failing")

        with pytest.raises(ValueError, match="alone and failing"):
            await db.write_sync(bad)
        assert (await db.fetchone("SELECT COUNT(*) FROM rooms"))[0] == 0
        await db.write_sync(
            lambda conn: conn.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!y', '12', 0)"
            )
        )
        assert (await db.fetchone("SELECT COUNT(*) FROM rooms"))[0] == 1
    finally:
        await db.close()


async def test_read_now_reads_on_the_loop_and_falls_back_when_busy(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "now.db")
    try:
        await db.write_sync(
            lambda conn: conn.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!n', '12', 0)"
            )
        )

        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM rooms").fetchone()[0])

        assert await db.read_now(count) == 1  # sees what was committed

        real = db._inline

        class Busy:
            """The inline connection answering "locked" once (as during a WAL index
            rebuild); the read must then go through the reader thread."""

            def __init__(self) -> None:
                self.calls = 0
                self.in_transaction = False

            def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
                self.calls += 1
                if sql in ("BEGIN", "COMMIT"):
                    return real.execute(sql)
                raise sqlite3.OperationalError("database is locked")

        busy = Busy()
        db._inline = busy  # type: ignore[assignment]
        assert await db.read_now(count) == 1
        assert busy.calls >= 2

        def broken(conn: sqlite3.Connection) -> int:
            conn.execute("SELECT * FROM no_such_table")
            return 0

        db._inline = real
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await db.read_now(broken)  # a real error is not retried elsewhere
        assert await db.read_now(count) == 1  # and the connection is usable after it
    finally:
        await db.close()


async def test_writes_without_fsync_are_committed_and_synced_later(tmp_path: Path) -> None:
    """``durable=False`` commits with synchronous=NORMAL (visible at once, to every
    connection), the writer goes back to FULL for the next write, and ``sync`` (which
    fsyncs the WAL) works with a WAL file and without one; the data survive a close and
    a reopen."""
    path = tmp_path / "s.db"
    db = await Database.open(path)
    try:

        def insert(i: int) -> Callable[[sqlite3.Connection], int]:
            def run(conn: sqlite3.Connection) -> int:
                conn.execute(
                    "INSERT INTO rooms (room_id, room_version, created_ts) VALUES (?, '12', 0)",
                    (f"!n{i}",),
                )
                return int(conn.execute("PRAGMA synchronous").fetchone()[0])

            return run

        levels = [await db.write_sync(insert(i), durable=False) for i in range(3)]
        assert levels == [1, 1, 1]  # NORMAL while they committed
        assert (await db.fetchone("SELECT COUNT(*) FROM rooms"))[0] == 3
        assert await db.write_sync(insert(3)) == 2  # FULL again
        # A batch with a durable write in it is committed durably.
        mixed = await asyncio.gather(
            db.write_sync(insert(4), durable=False), db.write_sync(insert(5))
        )
        assert mixed == [2, 2]
        await db.sync()
    finally:
        await db.close()
    db = await Database.open(path)
    try:
        await db.sync()  # after the close checkpointed the WAL away
        assert (await db.fetchone("SELECT COUNT(*) FROM rooms"))[0] == 6
    finally:
        await db.close()
