"""Send-to-device messaging: queueing messages per device and delivering them in /sync.

Spec: client-server-api/modules/send_to_device.md ("Server behaviour": store until
delivered, list in order of arrival, delete once the client syncs with the
``next_batch`` of the response that carried them, at most 100 per response) and
api/client-server/to_device.yaml; "Transaction identifiers" for idempotency.

Tables: to_device_inbox (the ``to_device`` stream), to_device_outbox, to_device_txn_ids.
Messages for users on other servers are queued in to_device_outbox as the content of
an ``m.direct_to_device`` EDU per destination (server-server-api "Send-to-device
messaging"), in the same transaction; the ``on_outbox`` hooks then hand them to the
federation sender (node/federation/outbound_edus.py). The client gets the same ``{}``
either way, as the spec has the server send them on.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.e2ee.store import dump
from node.ids import UserID
from node.storage.accounts import now_ms
from node.storage.database import Database
from node.sync.notifier import Notifier

log = logging.getLogger(__name__)

TO_DEVICE = "to_device"
# Spec: "100 messages is recommended as a reasonable limit".
MAX_PER_SYNC = 100
TXN_ID_LIFETIME_MS = 24 * 3600 * 1000

Messages = Mapping[str, Mapping[str, dict[str, Any]]]  # user -> device or "*" -> content


@dataclass(frozen=True, slots=True)
class Pending:
    position: int
    event: dict[str, Any]


class ToDeviceService:
    def __init__(self, db: Database, notifier: Notifier, server_name: str) -> None:
        self.db = db
        self.notifier = notifier
        self.server_name = server_name
        # Called after a send queued messages for other servers in to_device_outbox
        # (the federation side sends them: node/federation/outbound_edus.py).
        self.on_outbox: list[Callable[[], Awaitable[None]]] = []

    async def send(
        self,
        sender: str,
        sender_device: str,
        event_type: str,
        txn_id: str,
        messages: Messages,
    ) -> None:
        """Queue one message per target device; a repeated transaction does nothing."""
        remote_queued: list[str] = []

        async def txn(conn: aiosqlite.Connection) -> int | None:
            now = now_ms()
            await conn.execute(
                "DELETE FROM to_device_txn_ids WHERE created_ts < ?", (now - TXN_ID_LIFETIME_MS,)
            )
            cur = await conn.execute(
                "INSERT OR IGNORE INTO to_device_txn_ids (user_id, device_id, event_type,"
                " txn_id, created_ts) VALUES (?, ?, ?, ?, ?)",
                (sender, sender_device, event_type, txn_id, now),
            )
            if cur.rowcount == 0:
                return None  # a retransmission: the first request did the work
            position = None
            remote: dict[str, dict[str, Any]] = {}
            for user_id, by_device in messages.items():
                domain = UserID.parse(user_id).domain
                if domain != self.server_name:
                    remote.setdefault(domain, {})[user_id] = dict(by_device)
                    continue
                position = (
                    await self.queue_local_txn(conn, sender, event_type, user_id, by_device, now)
                    or position
                )
            for destination, by_user in sorted(remote.items()):
                edu = {
                    "sender": sender,
                    "type": event_type,
                    "message_id": secrets.token_urlsafe(12),
                    "messages": by_user,
                }
                await conn.execute(
                    "INSERT INTO to_device_outbox (destination, edu_json, ts) VALUES (?, ?, ?)",
                    (destination, dump(edu), now),
                )
            remote_queued[:] = sorted(remote)
            return position

        position = await self.db.write(txn)
        if position is not None:
            self.notifier.notify(TO_DEVICE, position)
        if remote_queued:
            for hook in self.on_outbox:
                try:
                    await hook()
                except Exception:  # queued: sent when the federation side next looks
                    log.exception("to-device outbox hook %r failed", hook)

    @staticmethod
    async def queue_local_txn(
        conn: aiosqlite.Connection,
        sender: str,
        event_type: str,
        user_id: str,
        by_device: Mapping[str, dict[str, Any]],
        now: int,
    ) -> int | None:
        """Queue a message for each targeted device of the local user ``user_id``
        (``*``: all of them); return the last position, None if no device matched."""
        position = None
        for device_id, content in await _targets_txn(conn, user_id, by_device):
            event = {"sender": sender, "type": event_type, "content": content}
            cur = await conn.execute(
                "INSERT INTO to_device_inbox (user_id, device_id, message_json, ts)"
                " VALUES (?, ?, ?, ?)",
                (user_id, device_id, dump(event), now),
            )
            position = cur.lastrowid
        return position

    async def deliver(
        self,
        user_id: str,
        device_id: str,
        acknowledged: int | None,
        upto: int,
        limit: int = MAX_PER_SYNC,
    ) -> list[Pending]:
        """What a /sync does: delete the messages the device has acknowledged (up to
        ``acknowledged``, its ``since``; None for none) and return the pending ones
        after it, up to ``upto``, oldest first. One read; a write only when there is
        something to delete."""
        after = -1 if acknowledged is None else acknowledged

        def read(conn: sqlite3.Connection) -> tuple[bool, list[Pending]]:
            stale = acknowledged is not None and (
                conn.execute(
                    "SELECT 1 FROM to_device_inbox WHERE user_id = ? AND device_id = ?"
                    " AND stream_id <= ? LIMIT 1",
                    (user_id, device_id, acknowledged),
                ).fetchone()
                is not None
            )
            rows = conn.execute(
                "SELECT stream_id, message_json FROM to_device_inbox WHERE user_id = ?"
                " AND device_id = ? AND stream_id > ? AND stream_id <= ?"
                " ORDER BY stream_id LIMIT ?",
                (user_id, device_id, after, upto, limit),
            ).fetchall()
            return stale, [Pending(r[0], json.loads(r[1])) for r in rows]

        stale, pending = await self.db.read_now(read)
        if stale and acknowledged is not None:
            await self.acknowledge(user_id, device_id, acknowledged)
        return pending

    async def acknowledge(self, user_id: str, device_id: str, upto: int) -> None:
        """The device has received everything up to ``upto``: delete it."""
        args = (user_id, device_id, upto)
        row = await self.db.fetchone(
            "SELECT 1 FROM to_device_inbox WHERE user_id = ? AND device_id = ?"
            " AND stream_id <= ? LIMIT 1",
            args,
        )
        if row is None:
            return  # most syncs: nothing to delete, no write

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "DELETE FROM to_device_inbox WHERE user_id = ? AND device_id = ?"
                " AND stream_id <= ?",
                args,
            )

        await self.db.write(txn)

    async def outbox(self, destination: str, limit: int = 50) -> list[tuple[int, dict[str, Any]]]:
        """Queued m.direct_to_device EDU contents for a server (for the federation sender)."""
        rows = await self.db.fetchall(
            "SELECT id, edu_json FROM to_device_outbox WHERE destination = ? ORDER BY id LIMIT ?",
            (destination, limit),
        )
        return [(r[0], json.loads(r[1])) for r in rows]

    async def remove_from_outbox(self, destination: str, upto_id: int) -> None:
        """Forget the EDUs sent to ``destination``, up to and including ``upto_id``."""

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "DELETE FROM to_device_outbox WHERE destination = ? AND id <= ?",
                (destination, upto_id),
            )

        await self.db.write(txn)

    async def max_position(self) -> int:
        row = await self.db.fetchone(
            "SELECT seq FROM sqlite_sequence WHERE name = 'to_device_inbox'"
        )
        return int(row[0]) if row else 0

    @staticmethod
    async def delete_gone_devices_txn(conn: aiosqlite.Connection, user_id: str | None) -> None:
        """Drop the queues of local devices that no longer exist."""
        where = (
            "NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = t.user_id"
            " AND d.device_id = t.device_id)"
        ) + (" AND t.user_id = ?" if user_id is not None else "")
        args = (user_id,) if user_id is not None else ()
        for table in ("to_device_inbox", "to_device_txn_ids"):
            await conn.execute(f"DELETE FROM {table} AS t WHERE {where}", args)


async def _targets_txn(
    conn: aiosqlite.Connection, user_id: str, by_device: Mapping[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """(device, content) pairs for a local user: ``*`` means every device; a message for
    a named device wins over ``*``; unknown devices are skipped."""
    async with conn.execute(
        "SELECT device_id FROM devices WHERE user_id = ? ORDER BY device_id", (user_id,)
    ) as cur:
        existing = [r[0] for r in await cur.fetchall()]
    out = {d: c for d, c in by_device.items() if d != "*" and d in existing}
    if "*" in by_device:
        for device_id in existing:
            out.setdefault(device_id, by_device["*"])
    return sorted(out.items())
