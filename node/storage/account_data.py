"""Account data, global and per room (table: account_data).

Every change gives the row the next position on the ``account_data`` sync stream,
allocated inside the write transaction, so positions follow commit order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.storage.database import Database

GLOBAL = ""  # the room_id of global account data

Content = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AccountDataItem:
    room_id: str  # GLOBAL for global account data
    type: str
    content: Content
    stream_id: int


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def max_stream_id(self) -> int:
        row = await self.db.fetchone("SELECT MAX(stream_id) FROM account_data")
        return int(row[0]) if row and row[0] is not None else 0

    async def get(self, user_id: str, room_id: str, data_type: str) -> Content | None:
        row = await self.db.fetchone(
            "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
            (user_id, room_id, data_type),
        )
        return _load(row[0]) if row else None

    async def put(self, user_id: str, room_id: str, data_type: str, content: Content) -> int:
        """Store ``content``; returns the change's stream position once committed."""
        return await self.update(user_id, room_id, data_type, lambda _old: content)

    async def update(
        self,
        user_id: str,
        room_id: str,
        data_type: str,
        change: Callable[[Content | None], Content],
    ) -> int:
        """Read, change and write one item in a single transaction (for m.tag edits)."""

        async def txn(conn: aiosqlite.Connection) -> int:
            async with conn.execute(
                "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
                (user_id, room_id, data_type),
            ) as cur:
                row = await cur.fetchone()
            content = change(_load(row[0]) if row else None)
            stream_id = await _next_stream_id_txn(conn)
            await conn.execute(
                "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, room_id, type)"
                " DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
                (user_id, room_id, data_type, _dump(content), stream_id),
            )
            return stream_id

        return await self.db.write(txn)

    async def changes(self, user_id: str, after: int | None, upto: int) -> list[AccountDataItem]:
        """The user's items last changed in (after, upto], oldest change first; every
        item up to ``upto`` when ``after`` is None."""
        rows = await self.db.fetchall(
            "SELECT room_id, type, content, stream_id FROM account_data"
            " WHERE user_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
            (user_id, -1 if after is None else after, upto),
        )
        return [AccountDataItem(r[0], r[1], _load(r[2]), r[3]) for r in rows]


async def _next_stream_id_txn(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT COALESCE(MAX(stream_id), 0) + 1 FROM account_data") as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _dump(content: Content) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def _load(text: str) -> Content:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
