"""Profile fields of local users (table: profile_fields), one row per field."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from node.storage.database import Database


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        rows = await self.db.fetchall(
            "SELECT field, value FROM profile_fields WHERE user_id = ? ORDER BY field",
            (user_id,),
        )
        return {r[0]: json.loads(r[1]) for r in rows}

    async def set_field(self, user_id: str, field: str, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO profile_fields (user_id, field, value) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value",
                (user_id, field, text),
            )

        await self.db.write(txn)

    async def delete_field(self, user_id: str, field: str) -> None:
        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "DELETE FROM profile_fields WHERE user_id = ? AND field = ?", (user_id, field)
            )

        await self.db.write(txn)
