"""Stored filters (table: filters), numbered per user from 0.

The definition is kept as canonical JSON, so the same filter uploaded again (as
clients do at every start) finds its earlier ID instead of growing the table.
"""

from __future__ import annotations

import aiosqlite

from node.storage.database import Database


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, user_id: str, definition: str) -> int:
        """Store a filter definition (canonical JSON); returns its filter ID."""

        async def txn(conn: aiosqlite.Connection) -> int:
            async with conn.execute(
                "SELECT filter_id FROM filters WHERE user_id = ? AND json = ?",
                (user_id, definition),
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return int(row[0])
            async with conn.execute(
                "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?",
                (user_id,),
            ) as cur:
                row = await cur.fetchone()
            assert row is not None
            filter_id = int(row[0])
            await conn.execute(
                "INSERT INTO filters (user_id, filter_id, json) VALUES (?, ?, ?)",
                (user_id, filter_id, definition),
            )
            return filter_id

        return await self.db.write(txn)

    async def get(self, user_id: str, filter_id: int) -> str | None:
        row = await self.db.fetchone(
            "SELECT json FROM filters WHERE user_id = ? AND filter_id = ?", (user_id, filter_id)
        )
        return str(row[0]) if row else None
