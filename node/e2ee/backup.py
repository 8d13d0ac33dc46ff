"""Server-side key backups: versions, and storing keys by the spec's replacement rules.

Spec: end_to_end_encryption.md "Server-side key backups" (keys are only written to the
most recently created version; which of two keys for a session is kept) and
api/client-server/key_backup.yaml (``etag``, ``count``, M_WRONG_ROOM_KEYS_VERSION with
``current_version``, M_NOT_FOUND). Every check of the version happens inside the write
transaction, so a concurrent new version cannot slip in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiosqlite

from node.e2ee import backup_store as bs
from node.e2ee.backup_store import BackupVersion, RoomKey
from node.errors import MatrixError, bad_json, invalid_param, not_found
from node.storage.database import Database

RoomKeys = Mapping[str, Mapping[str, RoomKey]]  # room -> session -> key


def should_replace(current: RoomKey | None, new: RoomKey) -> bool:
    """Spec: keep the verified key; then the lower first_message_index; then the lower
    forwarded_count. A key that is no better than the stored one does not replace it."""
    if current is None:
        return True
    if new.is_verified != current.is_verified:
        return new.is_verified
    if new.first_message_index != current.first_message_index:
        return new.first_message_index < current.first_message_index
    return new.forwarded_count < current.forwarded_count


def parse_room_key(value: Any, where: str) -> RoomKey:
    """A KeyBackupData object (key_backup_data.yaml), or M_BAD_JSON."""
    if not isinstance(value, dict):
        raise bad_json(f"'{where}' must be an object")
    fields = {}
    for name in ("first_message_index", "forwarded_count"):
        n = value.get(name)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise bad_json(f"'{where}.{name}' must be a non-negative integer")
        fields[name] = n
    if not isinstance(value.get("is_verified"), bool):
        raise bad_json(f"'{where}.is_verified' must be a boolean")
    if not isinstance(value.get("session_data"), dict):
        raise bad_json(f"'{where}.session_data' must be an object")
    return RoomKey(
        fields["first_message_index"],
        fields["forwarded_count"],
        value["is_verified"],
        value["session_data"],
    )


def _version_number(version: str) -> int | None:
    return int(version) if version.isascii() and version.isdigit() and len(version) < 16 else None


def _unknown_version() -> MatrixError:
    return not_found("Unknown backup version")


class BackupService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_version(self, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> str:
        async def txn(conn: aiosqlite.Connection) -> int:
            return await bs.create_version_txn(conn, user_id, algorithm, auth_data)

        return str(await self.db.write(txn))

    async def get_version(self, user_id: str, version: str | None) -> dict[str, Any]:
        """The backup's description; ``version`` None means the current backup."""

        async def read(conn: aiosqlite.Connection) -> dict[str, Any]:
            if version is None:
                number = await bs.current_version_txn(conn, user_id)
                if number is None:
                    raise not_found("No current backup version")
            else:
                number = _version_number(version)
            info = await self._existing(conn, user_id, number)
            return {
                "version": str(info.version),
                "algorithm": info.algorithm,
                "auth_data": info.auth_data,
                "etag": str(info.etag),
                "count": await bs.count_keys_txn(conn, user_id, info.version),
            }

        return await self.db.read(read)

    async def update_version(
        self, user_id: str, version: str, algorithm: str, auth_data: dict[str, Any]
    ) -> None:
        async def txn(conn: aiosqlite.Connection) -> None:
            info = await self._existing(conn, user_id, _version_number(version))
            if algorithm != info.algorithm:
                raise invalid_param("Algorithm does not match the backup's algorithm")
            await bs.update_auth_data_txn(conn, user_id, info.version, auth_data)

        await self.db.write(txn)

    async def delete_version(self, user_id: str, version: str) -> None:
        """Delete a backup and its keys; deleting a deleted backup succeeds."""

        async def txn(conn: aiosqlite.Connection) -> None:
            number = _version_number(version)
            info = None if number is None else await bs.get_version_txn(conn, user_id, number)
            if info is None:
                raise _unknown_version()
            if not info.deleted:
                await bs.delete_version_txn(conn, user_id, info.version)

        await self.db.write(txn)

    # -- keys ----------------------------------------------------------------------------

    async def put_keys(self, user_id: str, version: str, keys: RoomKeys) -> dict[str, Any]:
        async def txn(conn: aiosqlite.Connection) -> dict[str, Any]:
            current = await bs.current_version_txn(conn, user_id)
            if current is None:
                raise not_found("No current backup version")
            if _version_number(version) != current:
                raise MatrixError(
                    403,
                    "M_WRONG_ROOM_KEYS_VERSION",
                    "Wrong backup version: keys can only be added to the current backup",
                    current_version=str(current),
                )
            changed = False
            for room_id, sessions in keys.items():
                for session_id, key in sessions.items():
                    old = await bs.get_key_txn(conn, user_id, current, room_id, session_id)
                    if should_replace(old, key):
                        await bs.put_key_txn(conn, user_id, current, room_id, session_id, key)
                        changed = True
            if changed:
                await bs.bump_etag_txn(conn, user_id, current)
            return await self._etag_count(conn, user_id, current)

        return await self.db.write(txn)

    async def get_keys(
        self, user_id: str, version: str, room_id: str | None, session_id: str | None
    ) -> dict[str, dict[str, RoomKey]]:
        async def read(conn: aiosqlite.Connection) -> dict[str, dict[str, RoomKey]]:
            info = await self._existing(conn, user_id, _version_number(version))
            return await bs.get_keys_txn(conn, user_id, info.version, room_id, session_id)

        return await self.db.read(read)

    async def delete_keys(
        self, user_id: str, version: str, room_id: str | None, session_id: str | None
    ) -> dict[str, Any]:
        async def txn(conn: aiosqlite.Connection) -> dict[str, Any]:
            info = await self._existing(conn, user_id, _version_number(version))
            if await bs.delete_keys_txn(conn, user_id, info.version, room_id, session_id):
                await bs.bump_etag_txn(conn, user_id, info.version)
            return await self._etag_count(conn, user_id, info.version)

        return await self.db.write(txn)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    async def _existing(
        conn: aiosqlite.Connection, user_id: str, number: int | None
    ) -> BackupVersion:
        info = None if number is None else await bs.get_version_txn(conn, user_id, number)
        if info is None or info.deleted:
            raise _unknown_version()
        return info

    @staticmethod
    async def _etag_count(conn: aiosqlite.Connection, user_id: str, version: int) -> dict[str, Any]:
        info = await bs.get_version_txn(conn, user_id, version)
        etag = info.etag if info else 0
        return {"etag": str(etag), "count": await bs.count_keys_txn(conn, user_id, version)}
