"""Receipts (table: receipts, migration 0008).

Spec: content/client-server-api/modules/receipts.md "Events": one receipt per (user,
receipt type, thread) in a room. One row per (room, user, receipt type, thread);
``thread_id`` '' is an unthreaded receipt. Each change gives the row the next position
on the ``receipts`` sync stream, allocated inside the write transaction, so positions
follow commit order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aiosqlite

from node.storage.database import Database

UNTHREADED = ""
_COLUMNS = "room_id, user_id, receipt_type, thread_id, event_id, ts, stream_id"


@dataclass(frozen=True, slots=True)
class Receipt:
    room_id: str
    user_id: str
    receipt_type: str
    thread_id: str  # UNTHREADED, "main" or a thread root's event ID
    event_id: str
    ts: int
    stream_id: int


class ReceiptStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def max_stream_id(self) -> int:
        row = await self.db.fetchone("SELECT MAX(stream_id) FROM receipts")
        return int(row[0]) if row and row[0] is not None else 0

    async def put(
        self,
        room_id: str,
        user_id: str,
        receipt_type: str,
        thread_id: str,
        event_id: str,
        ts: int,
    ) -> int | None:
        """Move the receipt to ``event_id`` (an event of the room) if that is after where
        it is; returns the change's stream position, or None when it did not move."""

        async def txn(conn: aiosqlite.Connection) -> int | None:
            async with conn.execute(
                "SELECT stream_ordering FROM events WHERE event_id = ? AND room_id = ?",
                (event_id, room_id),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            ordering = int(row[0])
            async with conn.execute(
                "SELECT event_ordering FROM receipts WHERE room_id = ? AND user_id = ?"
                " AND receipt_type = ? AND thread_id = ?",
                (room_id, user_id, receipt_type, thread_id),
            ) as cur:
                current = await cur.fetchone()
            if current is not None and ordering <= current[0]:
                return None
            async with conn.execute("SELECT COALESCE(MAX(stream_id), 0) + 1 FROM receipts") as cur:
                next_row = await cur.fetchone()
            assert next_row is not None
            stream_id = int(next_row[0])
            await conn.execute(
                "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id,"
                " event_ordering, ts, stream_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET"
                " event_id = excluded.event_id, event_ordering = excluded.event_ordering,"
                " ts = excluded.ts, stream_id = excluded.stream_id",
                (room_id, user_id, receipt_type, thread_id, event_id, ordering, ts, stream_id),
            )
            return stream_id

        return await self.db.write(txn)

    async def get(
        self, room_id: str, user_id: str, receipt_type: str, thread_id: str = UNTHREADED
    ) -> Receipt | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM receipts WHERE room_id = ? AND user_id = ?"
            " AND receipt_type = ? AND thread_id = ?",
            (room_id, user_id, receipt_type, thread_id),
        )
        return Receipt(*row) if row else None

    async def changes(self, after: int, upto: int) -> list[Receipt]:
        """The receipts last changed in (after, upto], oldest change first."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM receipts WHERE stream_id > ? AND stream_id <= ?"
            " ORDER BY stream_id",
            (after, upto),
        )
        return [Receipt(*r) for r in rows]

    async def in_rooms(self, room_ids: Iterable[str], upto: int) -> list[Receipt]:
        """Every receipt in the rooms as of ``upto``, oldest change first."""
        ids = list(room_ids)
        out: list[Receipt] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM receipts WHERE room_id IN ({marks}) AND stream_id <= ?",
                (*chunk, upto),
            )
            out.extend(Receipt(*r) for r in rows)
        out.sort(key=lambda r: r.stream_id)
        return out
