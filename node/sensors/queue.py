"""The durable sensor queue (tables of migration 0018_sensor_queue.sql).

A reading is a row here before it is anything else: ``enqueue_reading`` commits it
(fsynced, like every Croft write) with the source's next ``seq``. The publisher reads
the oldest rows of a room (``peek``), sends them, and removes them (``remove``). Each
row is sent with the transaction ID ``sensorq-<row id>`` (row IDs are never reused),
so a row whose event was committed just before a crash is not sent twice: at start,
``forget_sent`` removes the rows whose transaction ID already names an event, and a
send that still meets one is answered with the earlier event (RoomService, DuplicateTxn).

The queue holds at most ``cap`` rows. When a reading would pass the cap, the oldest
readings (of any source) are dropped to make room; events from ``croft publish`` are
never dropped, though they count. The number of rows is kept by triggers in
``sensor_queue_depth``, so the check costs no count of the table.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from node.storage.database import Database

# Transaction IDs of the publisher's sends: device SENSOR_DEVICE of the owner (no real
# device: no token ever names it), txn_id TXN_PREFIX + row id.
SENSOR_DEVICE = "CROFTSENSORS"
TXN_PREFIX = "sensorq-"


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    id: int
    room: str
    event_type: str
    content: dict[str, Any]
    source_id: str | None

    @property
    def txn_id(self) -> str:
        return f"{TXN_PREFIX}{self.id}"


@dataclass(frozen=True, slots=True)
class Enqueued:
    row_id: int
    seq: int
    dropped: int  # readings dropped to stay within the cap


def _now_ms() -> int:
    return int(time.time() * 1000)


def depth_sync(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT depth FROM sensor_queue_depth WHERE one = 1").fetchone()
    return int(row[0]) if row else 0


def _drop_oldest(conn: sqlite3.Connection, cap: int) -> int:
    """Make room for one more row: drop the oldest readings past ``cap - 1``."""
    over = depth_sync(conn) - (cap - 1)
    if over <= 0:
        return 0
    cur = conn.execute(
        "DELETE FROM sensor_queue WHERE id IN (SELECT id FROM sensor_queue"
        " WHERE source_id IS NOT NULL ORDER BY id LIMIT ?)",
        (over,),
    )
    return cur.rowcount


def enqueue_reading_sync(
    conn: sqlite3.Connection,
    source_id: str,
    room: str,
    event_type: str,
    content: Mapping[str, Any],
    cap: int,
) -> Enqueued:
    """Store one reading; ``content["seq"]`` is set to the source's next number."""
    conn.execute(
        "INSERT INTO sensor_seq (source_id, last_seq) VALUES (?, 1)"
        " ON CONFLICT (source_id) DO UPDATE SET last_seq = last_seq + 1",
        (source_id,),
    )
    seq = int(
        conn.execute(
            "SELECT last_seq FROM sensor_seq WHERE source_id = ?", (source_id,)
        ).fetchone()[0]
    )
    dropped = _drop_oldest(conn, cap)
    body = json.dumps({**content, "seq": seq}, ensure_ascii=False, separators=(",", ":"))
    cur = conn.execute(
        "INSERT INTO sensor_queue (room, event_type, content, source_id, created_ts)"
        " VALUES (?, ?, ?, ?, ?)",
        (room, event_type, body, source_id, _now_ms()),
    )
    assert cur.lastrowid is not None
    return Enqueued(cur.lastrowid, seq, dropped)


def enqueue_event_sync(
    conn: sqlite3.Connection, room: str, event_type: str, content: Mapping[str, Any]
) -> int:
    """Store one event given to ``croft publish`` (never dropped for the cap)."""
    cur = conn.execute(
        "INSERT INTO sensor_queue (room, event_type, content, source_id, created_ts)"
        " VALUES (?, ?, ?, NULL, ?)",
        (room, event_type, json.dumps(content, ensure_ascii=False), _now_ms()),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


class SensorQueue:
    """The queue of one open database (the node's)."""

    def __init__(self, db: Database, cap: int) -> None:
        self.db = db
        self.cap = cap

    async def enqueue_reading(
        self, source_id: str, room: str, event_type: str, content: Mapping[str, Any]
    ) -> Enqueued:
        return await self.db.write_sync(
            lambda c: enqueue_reading_sync(c, source_id, room, event_type, content, self.cap)
        )

    async def enqueue_event(self, room: str, event_type: str, content: Mapping[str, Any]) -> int:
        return await self.db.write_sync(lambda c: enqueue_event_sync(c, room, event_type, content))

    async def depth(self) -> int:
        return await self.db.read_sync(depth_sync)

    async def rooms(self) -> list[tuple[str, int]]:
        """Each room with queued rows, and how many (oldest first)."""
        rows = await self.db.fetchall(
            "SELECT room, COUNT(*) FROM sensor_queue GROUP BY room ORDER BY MIN(id)"
        )
        return [(r[0], int(r[1])) for r in rows]

    async def peek(self, room: str, limit: int) -> list[QueuedEvent]:
        """The oldest ``limit`` rows of ``room``, in order."""
        rows = await self.db.fetchall(
            "SELECT id, room, event_type, content, source_id FROM sensor_queue"
            " WHERE room = ? ORDER BY id LIMIT ?",
            (room, limit),
        )
        return [QueuedEvent(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    async def remove(self, ids: Iterable[int]) -> int:
        """Remove sent (or undeliverable) rows in one write; how many were there."""
        ids = list(ids)
        if not ids:
            return 0

        def delete(conn: sqlite3.Connection) -> int:
            total = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                total += conn.execute(
                    f"DELETE FROM sensor_queue WHERE id IN ({marks})", chunk
                ).rowcount
            return total

        return await self.db.write_sync(delete)

    async def forget_sent(self, owner: str) -> int:
        """Remove the rows already made events (a crash came between the event's commit
        and the row's removal): their transaction ID is in event_txn_ids."""
        return await self.db.write_sync(
            lambda conn: (
                conn.execute(
                    "DELETE FROM sensor_queue WHERE EXISTS (SELECT 1 FROM event_txn_ids t"
                    " WHERE t.user_id = ? AND t.device_id = ?"
                    " AND t.txn_id = ? || sensor_queue.id)",
                    (owner, SENSOR_DEVICE, TXN_PREFIX),
                ).rowcount
            )
        )
