"""Server-side key backups: versions and the backed-up session keys.

Tables: e2e_room_keys_versions, e2e_room_keys (migration 0006). Versions are integers
per user, never reused; a deleted version keeps a tombstone row. Spec:
end_to_end_encryption.md "Server-side key backups"; key_backup.yaml.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.e2ee.store import dump


@dataclass(frozen=True, slots=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: dict[str, Any]
    etag: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class RoomKey:
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }


async def get_version_txn(
    conn: aiosqlite.Connection, user_id: str, version: int
) -> BackupVersion | None:
    async with conn.execute(
        "SELECT version, algorithm, auth_data_json, etag, deleted FROM e2e_room_keys_versions"
        " WHERE user_id = ? AND version = ?",
        (user_id, version),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return BackupVersion(row[0], row[1], json.loads(row[2]), row[3], bool(row[4]))


async def current_version_txn(conn: aiosqlite.Connection, user_id: str) -> int | None:
    """The newest version that is not deleted: the one keys may be written to."""
    async with conn.execute(
        "SELECT MAX(version) FROM e2e_room_keys_versions WHERE user_id = ? AND deleted = 0",
        (user_id,),
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


async def create_version_txn(
    conn: aiosqlite.Connection, user_id: str, algorithm: str, auth_data: dict[str, Any]
) -> int:
    async with conn.execute(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM e2e_room_keys_versions WHERE user_id = ?",
        (user_id,),
    ) as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 1
    await conn.execute(
        "INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data_json)"
        " VALUES (?, ?, ?, ?)",
        (user_id, version, algorithm, dump(auth_data)),
    )
    return version


async def update_auth_data_txn(
    conn: aiosqlite.Connection, user_id: str, version: int, auth_data: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE e2e_room_keys_versions SET auth_data_json = ? WHERE user_id = ? AND version = ?",
        (dump(auth_data), user_id, version),
    )


async def delete_version_txn(conn: aiosqlite.Connection, user_id: str, version: int) -> None:
    await conn.execute(
        "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version)
    )
    await conn.execute(
        "UPDATE e2e_room_keys_versions SET deleted = 1 WHERE user_id = ? AND version = ?",
        (user_id, version),
    )


async def bump_etag_txn(conn: aiosqlite.Connection, user_id: str, version: int) -> None:
    await conn.execute(
        "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
        (user_id, version),
    )


async def count_keys_txn(conn: aiosqlite.Connection, user_id: str, version: int) -> int:
    async with conn.execute(
        "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?",
        (user_id, version),
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_key_txn(
    conn: aiosqlite.Connection, user_id: str, version: int, room_id: str, session_id: str
) -> RoomKey | None:
    keys = await get_keys_txn(conn, user_id, version, room_id, session_id)
    return keys.get(room_id, {}).get(session_id)


async def get_keys_txn(
    conn: aiosqlite.Connection,
    user_id: str,
    version: int,
    room_id: str | None = None,
    session_id: str | None = None,
) -> dict[str, dict[str, RoomKey]]:
    """The keys of a version, optionally of one room or one session: room -> session."""
    sql = (
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,"
        " session_data_json FROM e2e_room_keys WHERE user_id = ? AND version = ?"
    )
    args: list[Any] = [user_id, version]
    if room_id is not None:
        sql += " AND room_id = ?"
        args.append(room_id)
    if session_id is not None:
        sql += " AND session_id = ?"
        args.append(session_id)
    out: dict[str, dict[str, RoomKey]] = {}
    async with conn.execute(sql + " ORDER BY room_id, session_id", args) as cur:
        for r in await cur.fetchall():
            key = RoomKey(r[2], r[3], bool(r[4]), json.loads(r[5]))
            out.setdefault(r[0], {})[r[1]] = key
    return out


async def put_key_txn(
    conn: aiosqlite.Connection,
    user_id: str,
    version: int,
    room_id: str,
    session_id: str,
    key: RoomKey,
) -> None:
    await conn.execute(
        "INSERT OR REPLACE INTO e2e_room_keys (user_id, version, room_id, session_id,"
        " first_message_index, forwarded_count, is_verified, session_data_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            user_id,
            version,
            room_id,
            session_id,
            key.first_message_index,
            key.forwarded_count,
            int(key.is_verified),
            dump(key.session_data),
        ),
    )


async def delete_keys_txn(
    conn: aiosqlite.Connection,
    user_id: str,
    version: int,
    room_id: str | None,
    session_id: str | None,
) -> int:
    sql = "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?"
    args: list[Any] = [user_id, version]
    if room_id is not None:
        sql += " AND room_id = ?"
        args.append(room_id)
    if session_id is not None:
        sql += " AND session_id = ?"
        args.append(session_id)
    cur = await conn.execute(sql, args)
    return cur.rowcount
