"""Device keys, one-time and fallback keys, and the device_lists stream.

Tables: e2e_device_keys, e2e_one_time_keys, e2e_fallback_keys, e2e_device_list_changes
(see migration 0006). Spec: end_to_end_encryption.md "One-time and fallback keys",
"Uploading keys", "Tracking the device list for a user"; keys.yaml.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.e2ee.validate import KeyMap
from node.errors import MatrixError, invalid_param
from node.events.canonical import encode_canonical_json
from node.storage.accounts import now_ms
from node.storage.database import Database

# Synapse and Element expect this count even when it is zero.
SIGNED_CURVE25519 = "signed_curve25519"


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def same_json(a: Any, b: Any) -> bool:
    return encode_canonical_json(a) == encode_canonical_json(b)


@dataclass(frozen=True, slots=True)
class DeviceKeysRow:
    device_id: str
    keys: dict[str, Any]
    display_name: str | None


class DeviceKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- uploads -------------------------------------------------------------------------

    async def upload_txn(
        self,
        conn: aiosqlite.Connection,
        user_id: str,
        device_id: str,
        device_keys: dict[str, Any] | None,
        one_time_keys: KeyMap,
        fallback_keys: KeyMap,
    ) -> int | None:
        """Store an upload; return the device_lists position if the device's keys changed.

        Re-uploading identical keys is a no-op. Identity keys that differ from the ones
        stored for this device are refused: other devices already trust the old ones (a
        new identity needs a new device, i.e. a new login). A one-time key ID reused
        with different content is refused too.
        """
        async with conn.execute(
            "SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
        ) as cur:
            if await cur.fetchone() is None:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "This device was logged out")
        position = None
        if device_keys is not None:
            position = await self._device_keys_txn(conn, user_id, device_id, device_keys)
        for (algorithm, key_id), key in one_time_keys.items():
            async with conn.execute(
                "SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                " AND algorithm = ? AND key_id = ?",
                (user_id, device_id, algorithm, key_id),
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                if not same_json(json.loads(row[0]), key):
                    raise invalid_param(
                        f"One-time key {algorithm}:{key_id} already exists with other content"
                    )
                continue
            await conn.execute(
                "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
                " VALUES (?, ?, ?, ?, ?)",
                (user_id, device_id, algorithm, key_id, dump(key)),
            )
        for (algorithm, key_id), key in fallback_keys.items():
            # A new key replaces the old one and is unused; the same key keeps its state.
            await conn.execute(
                "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE"
                " SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0"
                " WHERE key_id != excluded.key_id OR key_json != excluded.key_json",
                (user_id, device_id, algorithm, key_id, dump(key)),
            )
        return position

    async def _device_keys_txn(
        self, conn: aiosqlite.Connection, user_id: str, device_id: str, keys: dict[str, Any]
    ) -> int | None:
        async with conn.execute(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
            (user_id, device_id),
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            old = json.loads(row[0])
            if same_json(old, keys):
                return None
            if not same_json(old.get("keys"), keys.get("keys")):
                raise invalid_param(
                    f"Device {device_id} already has different identity keys; log in as a"
                    " new device to use new keys"
                )
        await conn.execute(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json, added_ts)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO UPDATE"
            " SET key_json = excluded.key_json",
            (user_id, device_id, dump(keys), now_ms()),
        )
        return await self.record_change_txn(conn, user_id, device_id)

    @staticmethod
    async def record_change_txn(
        conn: aiosqlite.Connection, user_id: str, device_id: str | None
    ) -> int:
        """Add a device_lists stream entry for ``user_id``; return its position."""
        cur = await conn.execute(
            "INSERT INTO e2e_device_list_changes (user_id, device_id, ts) VALUES (?, ?, ?)",
            (user_id, device_id, now_ms()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    # -- claims --------------------------------------------------------------------------

    @staticmethod
    async def claim_txn(
        conn: aiosqlite.Connection, wanted: Iterable[tuple[str, str, str]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """Claim a key per (user, device, algorithm): the oldest one-time key, else the
        fallback key (marked used). Devices without either are left out."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, device_id, algorithm in wanted:
            args = (user_id, device_id, algorithm)
            async with conn.execute(
                "SELECT id, key_id, key_json FROM e2e_one_time_keys WHERE user_id = ?"
                " AND device_id = ? AND algorithm = ? ORDER BY id LIMIT 1",
                args,
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                await conn.execute("DELETE FROM e2e_one_time_keys WHERE id = ?", (row[0],))
                key_id, key_json = row[1], row[2]
            else:
                async with conn.execute(
                    "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ?"
                    " AND device_id = ? AND algorithm = ?",
                    args,
                ) as cur:
                    row = await cur.fetchone()
                if row is None:
                    continue
                await conn.execute(
                    "UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ?"
                    " AND algorithm = ?",
                    args,
                )
                key_id, key_json = row[0], row[1]
            devices = out.setdefault(user_id, {})
            devices.setdefault(device_id, {})[f"{algorithm}:{key_id}"] = json.loads(key_json)
        return out

    # -- reads ---------------------------------------------------------------------------

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        return (await self.key_counts(user_id, device_id))[0]

    async def key_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """What every /sync reports: one-time key counts by algorithm, and the
        algorithms of unused fallback keys (one round trip)."""

        def read(conn: sqlite3.Connection) -> tuple[dict[str, int], list[str]]:
            args = (user_id, device_id)
            counts = {SIGNED_CURVE25519: 0}
            counts.update(
                (r[0], int(r[1]))
                for r in conn.execute(
                    "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ?"
                    " AND device_id = ? GROUP BY algorithm",
                    args,
                )
            )
            fallback = [
                r[0]
                for r in conn.execute(
                    "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ?"
                    " AND device_id = ? AND used = 0 ORDER BY algorithm",
                    args,
                )
            ]
            return counts, fallback

        return await self.db.read_now(read)

    async def get_device_keys(self, user_id: str) -> list[DeviceKeysRow]:
        """The keys of the user's existing devices, with their display names."""
        rows = await self.db.fetchall(
            "SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
            " JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
            " WHERE k.user_id = ? ORDER BY k.device_id",
            (user_id,),
        )
        return [DeviceKeysRow(r[0], json.loads(r[1]), r[2]) for r in rows]

    async def get_device_key(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
            (user_id, device_id),
        )
        return json.loads(row[0]) if row else None

    async def device_ids(self, user_id: str) -> set[str]:
        rows = await self.db.fetchall("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
        return {r[0] for r in rows}

    async def users_changed(self, after: int, upto: int) -> set[str]:
        """Users whose devices or cross-signing keys changed in positions (after, upto]."""
        if upto <= after:
            return set()
        rows = await self.db.fetchall(
            "SELECT DISTINCT user_id FROM e2e_device_list_changes"
            " WHERE stream_id > ? AND stream_id <= ?",
            (after, upto),
        )
        return {r[0] for r in rows}

    async def max_position(self) -> int:
        row = await self.db.fetchone(
            "SELECT seq FROM sqlite_sequence WHERE name = 'e2e_device_list_changes'"
        )
        return int(row[0]) if row else 0

    # -- deleted devices -----------------------------------------------------------------

    async def delete_gone_devices_txn(
        self, conn: aiosqlite.Connection, user_id: str | None
    ) -> int | None:
        """Delete the keys of local devices that no longer exist (logged out); record a
        device-list change for each that had identity keys. Return the last position."""
        gone = (
            " NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = t.user_id"
            " AND d.device_id = t.device_id)"
            " AND t.user_id IN (SELECT user_id FROM accounts)"
        )
        where = gone + (" AND t.user_id = ?" if user_id is not None else "")
        args = (user_id,) if user_id is not None else ()
        async with conn.execute(
            f"SELECT t.user_id, t.device_id FROM e2e_device_keys t WHERE {where}", args
        ) as cur:
            with_keys = [(r[0], r[1]) for r in await cur.fetchall()]
        for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
            await conn.execute(f"DELETE FROM {table} AS t WHERE {where}", args)
        position = None
        for uid, device_id in with_keys:
            await conn.execute(
                "DELETE FROM e2e_signatures WHERE (target_user_id = ? AND target_key_id = ?)"
                " OR (signer_user_id = ? AND signer_key_id = ?)",
                (uid, device_id, uid, f"ed25519:{device_id}"),
            )
            position = await self.record_change_txn(conn, uid, device_id)
        return position
