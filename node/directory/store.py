"""Tables room_aliases and published_rooms (migration 0010_directory.sql)."""

from __future__ import annotations

import aiosqlite

from node.storage.accounts import now_ms
from node.storage.database import Database


class DirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- aliases ---------------------------------------------------------------------------

    async def get_room_id(self, alias: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT room_id FROM room_aliases WHERE room_alias = ?", (alias,)
        )
        return row[0] if row else None

    async def aliases_of(self, room_id: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY created_ts, room_alias",
            (room_id,),
        )
        return [r[0] for r in rows]

    @staticmethod
    async def put_alias_txn(
        conn: aiosqlite.Connection, alias: str, room_id: str, creator: str
    ) -> bool:
        """Map ``alias`` to ``room_id``; False (and no change) if the alias is taken."""
        cur = await conn.execute(
            "INSERT OR IGNORE INTO room_aliases (room_alias, room_id, creator, created_ts)"
            " VALUES (?, ?, ?, ?)",
            (alias, room_id, creator, now_ms()),
        )
        return cur.rowcount == 1

    async def put_alias(self, alias: str, room_id: str, creator: str) -> bool:
        return await self.db.write(lambda conn: self.put_alias_txn(conn, alias, room_id, creator))

    async def delete_alias(self, alias: str) -> bool:
        async def txn(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute("DELETE FROM room_aliases WHERE room_alias = ?", (alias,))
            return cur.rowcount == 1

        return await self.db.write(txn)

    # -- the published room directory ---------------------------------------------------

    async def is_published(self, room_id: str) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM published_rooms WHERE room_id = ?", (room_id,))
        return row is not None

    @staticmethod
    async def set_published_txn(conn: aiosqlite.Connection, room_id: str, published: bool) -> None:
        if published:
            await conn.execute(
                "INSERT OR IGNORE INTO published_rooms (room_id, published_ts) VALUES (?, ?)",
                (room_id, now_ms()),
            )
        else:
            await conn.execute("DELETE FROM published_rooms WHERE room_id = ?", (room_id,))

    async def set_published(self, room_id: str, published: bool) -> None:
        await self.db.write(lambda conn: self.set_published_txn(conn, room_id, published))

    async def published_rooms(self) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT p.room_id FROM published_rooms p JOIN rooms r ON r.room_id = p.room_id"
            " ORDER BY p.published_ts, p.room_id"
        )
        return [r[0] for r in rows]

    async def joined_member_counts(self, room_ids: list[str]) -> dict[str, int]:
        if not room_ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT c.room_id, COUNT(*) FROM current_state c"
            " JOIN events e ON e.event_id = c.event_id"
            f" WHERE c.type = 'm.room.member' AND c.room_id IN ({','.join('?' * len(room_ids))})"
            " AND json_extract(e.json, '$.content.membership') = 'join' GROUP BY c.room_id",
            room_ids,
        )
        return {r[0]: int(r[1]) for r in rows}
