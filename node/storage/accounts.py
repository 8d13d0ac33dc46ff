"""Accounts, devices and access tokens (tables: accounts, devices, access_tokens).

Tokens are kept as their SHA-256: a copy of the database does not hand out sessions.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection
from dataclasses import dataclass

import aiosqlite

from node.storage.database import Database


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class TokenOwner:
    user_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class Device:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_account(self, user_id: str, password_hash: str) -> None:
        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO accounts (user_id, password_hash, created_ts) VALUES (?, ?, ?)",
                (user_id, password_hash, now_ms()),
            )

        await self.db.write(txn)

    async def get_password_hash(self, user_id: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT password_hash FROM accounts WHERE user_id = ? AND deactivated = 0",
            (user_id,),
        )
        return row["password_hash"] if row else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE user_id = ?",
                (password_hash, user_id),
            )

        await self.db.write(txn)

    async def account_exists(self, user_id: str) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM accounts WHERE user_id = ?", (user_id,))
        return row is not None

    async def add_device_token(
        self, user_id: str, device_id: str, display_name: str | None, token: str
    ) -> None:
        """Create the device if it is new, and give it a new access token."""

        async def txn(conn: aiosqlite.Connection) -> None:
            ts = now_ms()
            await conn.execute(
                "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO UPDATE"
                " SET display_name = COALESCE(excluded.display_name, display_name)",
                (user_id, device_id, display_name, ts, ts),
            )
            await conn.execute(
                "INSERT INTO access_tokens (token_sha256, user_id, device_id, created_ts)"
                " VALUES (?, ?, ?, ?)",
                (token_digest(token), user_id, device_id, ts),
            )

        await self.db.write(txn)

    async def get_token_owner(self, token: str) -> TokenOwner | None:
        row = await self.db.fetchone(
            "SELECT t.user_id, t.device_id FROM access_tokens t"
            " JOIN accounts a ON a.user_id = t.user_id"
            " WHERE t.token_sha256 = ? AND a.deactivated = 0",
            (token_digest(token),),
        )
        return TokenOwner(row["user_id"], row["device_id"]) if row else None

    async def delete_device(self, user_id: str, device_id: str) -> None:
        """Delete a device and every token it holds."""

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?",
                (user_id, device_id),
            )
            await conn.execute(
                "DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
            )

        await self.db.write(txn)

    async def delete_all_devices(self, user_id: str, except_device: str | None = None) -> None:
        async def txn(conn: aiosqlite.Connection) -> None:
            keep = except_device or ""
            await conn.execute(
                "DELETE FROM access_tokens WHERE user_id = ? AND device_id != ?", (user_id, keep)
            )
            await conn.execute(
                "DELETE FROM devices WHERE user_id = ? AND device_id != ?", (user_id, keep)
            )

        await self.db.write(txn)

    async def get_devices(self, user_id: str) -> list[Device]:
        rows = await self.db.fetchall(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = ? ORDER BY created_ts",
            (user_id,),
        )
        return [Device(*tuple(r)) for r in rows]

    async def get_device(self, user_id: str, device_id: str) -> Device | None:
        row = await self.db.fetchone(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = ? AND device_id = ?",
            (user_id, device_id),
        )
        return Device(*tuple(row)) if row else None

    async def set_device_display_name(
        self, user_id: str, device_id: str, display_name: str
    ) -> bool:
        """Rename a device; False if the user has no such device."""

        async def txn(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(
                "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                (display_name, user_id, device_id),
            )
            return cur.rowcount > 0

        return await self.db.write(txn)

    async def delete_devices(self, user_id: str, device_ids: Collection[str]) -> None:
        """Delete devices and every token they hold, in one transaction."""

        async def txn(conn: aiosqlite.Connection) -> None:
            for device_id in device_ids:
                await conn.execute(
                    "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id),
                )
                await conn.execute(
                    "DELETE FROM devices WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id),
                )

        await self.db.write(txn)

    async def touch_device(self, user_id: str, device_id: str, ts: int, ip: str | None) -> None:
        """Record when and from where a device was last seen."""

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "UPDATE devices SET last_seen_ts = ?, last_seen_ip = COALESCE(?, last_seen_ip)"
                " WHERE user_id = ? AND device_id = ?",
                (ts, ip, user_id, device_id),
            )

        await self.db.write(txn)

    async def change_password(
        self, user_id: str, password_hash: str, *, logout_except: str | None, logout: bool
    ) -> None:
        """Set a new password hash and, with ``logout``, delete every device (and its
        tokens) but ``logout_except``, in one transaction."""

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE user_id = ?",
                (password_hash, user_id),
            )
            if logout:
                keep = logout_except or ""
                await conn.execute(
                    "DELETE FROM access_tokens WHERE user_id = ? AND device_id != ?",
                    (user_id, keep),
                )
                await conn.execute(
                    "DELETE FROM devices WHERE user_id = ? AND device_id != ?", (user_id, keep)
                )

        await self.db.write(txn)

    async def count_tokens(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM access_tokens")
        return int(row[0]) if row else 0
