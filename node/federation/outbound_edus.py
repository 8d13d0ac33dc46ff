"""What the local users do, sent to the other servers: typing, receipts, presence,
device-list and cross-signing key changes, and to-device messages.

Spec: content/server-server-api.md "Typing Notifications" (``m.typing`` to the servers
in the room), "Receipts" (``m.receipt``; private receipts never leave the server),
"Presence" (``m.presence`` to the servers sharing a room with the user), "Device
Management" (``m.device_list_update`` to every server sharing a room with the user,
whenever a device is added or deleted or its keys change, in a sequence of
``stream_id`` per user with ``prev_id`` pointing at the one before; GET
/user/devices answers the last ``stream_id``), "End-to-End Encryption"
(``m.signing_key_update``), "Send-to-device messaging" (``m.direct_to_device``);
api/server-server/user_devices.yaml.

Everything goes through the federation sender (node/federation/sender.py): typing and
presence in memory (a newer one replaces a queued one), the rest durable. The hooks
are the services' own: TypingService.on_change, ReceiptService.on_receipt,
PresenceService.on_change, ToDeviceService.on_outbox; device-list changes are read
from the ``device_lists`` stream (table e2e_device_list_changes) by a task that wakes
when the stream moves, from a position stored in device_list_outbound_position, so a
change made while the node was down or before the sender came up is sent later.

A cross-signing change (a stream row without a device: new cross-signing keys or
signatures) sends the user's signing keys and an update for each of their devices,
since a signature on a device changes its published keys. Device display names are
not published (as Synapse does by default): they are private to the owner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

import aiosqlite

from node.e2ee.keys import DEVICE_LISTS
from node.e2ee.service import E2EEService
from node.ephemeral.presence import PresenceService, presence_content
from node.ephemeral.receipts import READ
from node.rooms.auth_common import server_of
from node.storage.accounts import now_ms
from node.storage.database import Database
from node.storage.events import EventStore
from node.sync.notifier import Notifier

log = logging.getLogger(__name__)

TYPING = "m.typing"
RECEIPT = "m.receipt"
PRESENCE = "m.presence"
DEVICE_LIST_UPDATE = "m.device_list_update"
SIGNING_KEY_UPDATE = "m.signing_key_update"
DIRECT_TO_DEVICE = "m.direct_to_device"
OUTBOUND_BATCH = 200  # device_lists rows read at a time


class EduSender(Protocol):
    """node/federation/sender.py FederationSender.send_edu."""

    async def send_edu(
        self,
        destination: str,
        edu_type: str,
        content: Mapping[str, Any],
        *,
        key: str | None = None,
        durable: bool = True,
    ) -> None: ...


class OutboundEdus:
    def __init__(
        self,
        db: Database,
        events: EventStore,
        e2ee: E2EEService,
        presence: PresenceService,
        notifier: Notifier,
        server_name: str,
        sender: EduSender | None,
    ) -> None:
        self.db = db
        self.events = events
        self.e2ee = e2ee
        self.presence = presence
        self.notifier = notifier
        self.server_name = server_name
        # None: nothing is sent (and nothing lost: device lists and to-device messages
        # stay queued in the database until a node with a sender starts).
        self.sender = sender
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outbound_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._loop: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Send what was queued before, then follow the device_lists stream."""
        if self.sender is None:
            return
        await self.flush_to_device()
        self._loop = asyncio.get_running_loop().create_task(
            self._outbound_loop(), name="device-list updates"
        )

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._loop] if self._loop else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._loop = None

    async def wait_idle(self) -> None:
        """Wait until the sends started so far are queued (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _is_local(self, user_id: str) -> bool:
        return server_of(user_id) == self.server_name

    async def _send(
        self,
        destinations: set[str],
        edu_type: str,
        content: Mapping[str, Any],
        *,
        key: str | None,
        durable: bool,
    ) -> None:
        if self.sender is None:
            return
        for destination in sorted(destinations - {self.server_name}):
            try:
                await self.sender.send_edu(destination, edu_type, content, key=key, durable=durable)
            except Exception:
                log.exception("cannot queue %s for %s", edu_type, destination)

    # -- typing, receipts, presence (the services' hooks) ------------------------------

    def on_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """TypingService.on_change: a local user's typing goes to the room's servers."""
        if self.sender is None or not self._is_local(user_id):
            return

        async def send() -> None:
            servers = await self.events.get_joined_servers(room_id)
            content = {"room_id": room_id, "user_id": user_id, "typing": typing}
            await self._send(servers, TYPING, content, key=f"{room_id} {user_id}", durable=False)

        self._spawn(send(), f"typing {room_id}")

    async def on_receipt(
        self,
        room_id: str,
        user_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
        ts: int,
    ) -> None:
        """ReceiptService.on_receipt: a local user's m.read receipt (never a private
        one) goes to the room's servers."""
        if receipt_type != READ or not self._is_local(user_id):
            return
        data: dict[str, Any] = {"ts": ts}
        if thread_id is not None:
            data["thread_id"] = thread_id
        content = {room_id: {READ: {user_id: {"event_ids": [event_id], "data": data}}}}
        servers = await self.events.get_joined_servers(room_id)
        key = f"{room_id} {user_id} {thread_id or ''}"
        await self._send(servers, RECEIPT, content, key=key, durable=True)

    def on_presence(self, user_id: str) -> None:
        """PresenceService.on_change: a local user's presence goes to the servers
        sharing a room with them."""
        if self.sender is None or not self.presence.enabled or not self._is_local(user_id):
            return
        now = now_ms()
        update = {"user_id": user_id, **presence_content(self.presence.state(user_id), now)}
        # Required by m.presence; a user never active was last active "at the epoch".
        update.setdefault("last_active_ago", now)

        async def send() -> None:
            servers = await self.events.get_servers_sharing_rooms(user_id)
            await self._send(servers, PRESENCE, {"push": [update]}, key=user_id, durable=False)

        self._spawn(send(), f"presence {user_id}")

    # -- to-device messages ------------------------------------------------------------

    async def flush_to_device(self) -> None:
        """ToDeviceService.on_outbox: hand the queued m.direct_to_device EDUs to the
        sender. A crash between the two writes sends a message twice: receivers
        dedupe on message_id."""
        if self.sender is None:
            return
        async with self._flush_lock:
            while True:
                rows = await self.db.fetchall(
                    "SELECT id, destination, edu_json FROM to_device_outbox ORDER BY id LIMIT 100"
                )
                if not rows:
                    return
                last: dict[str, int] = {}
                for row_id, destination, edu_json in rows:
                    await self.sender.send_edu(
                        destination, DIRECT_TO_DEVICE, json.loads(edu_json), durable=True
                    )
                    last[destination] = row_id
                for destination, row_id in last.items():
                    await self.e2ee.to_device.remove_from_outbox(destination, row_id)

    # -- device lists ----------------------------------------------------------------------

    async def _outbound_loop(self) -> None:
        done = -1
        while True:
            current = self.notifier.current_token()
            if current.get(DEVICE_LISTS) != done:
                done = current.get(DEVICE_LISTS)
                try:
                    await self.send_device_list_changes()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sending device list updates failed; retried on next change")
            if self.notifier.closed:
                return  # the node is stopping
            await self.notifier.wait_for_change(current, 3600, background=True)

    async def send_device_list_changes(self) -> None:
        """Turn the local users' device_lists rows after the stored position into EDUs
        for the servers sharing a room with each user."""
        if self.sender is None:
            return
        async with self._outbound_lock:
            while await self._send_batch():
                pass

    async def _send_batch(self) -> bool:
        assert self.sender is not None

        def read(conn: sqlite3.Connection) -> list[tuple[int, str, str | None]]:
            rows = conn.execute(
                "SELECT stream_id, user_id, device_id FROM e2e_device_list_changes"
                " WHERE stream_id > (SELECT position FROM device_list_outbound_position"
                " WHERE id = 1) ORDER BY stream_id LIMIT ?",
                (OUTBOUND_BATCH,),
            ).fetchall()
            return [(r[0], r[1], r[2]) for r in rows]

        rows = await self.db.read_sync(read)
        if not rows:
            return False
        new_position = rows[-1][0]
        local = {r[0] for r in await self.db.fetchall("SELECT user_id FROM accounts")}
        changes: dict[str, list[str | None]] = {}
        for _, user_id, device_id in rows:
            if user_id not in local:
                continue  # a remote user's change, recorded for /sync
            pending = changes.setdefault(user_id, [])
            if device_id not in pending:
                pending.append(device_id)
        planned: list[tuple[str, set[str], list[tuple[str, dict[str, Any]]]]] = []
        for user_id, device_ids in changes.items():
            destinations = await self.events.get_servers_sharing_rooms(user_id)
            destinations.discard(self.server_name)
            if destinations:
                planned.append((user_id, destinations, await self._edus_for(user_id, device_ids)))
        numbered = await self.db.write(lambda conn: self._number_txn(conn, planned, new_position))
        for destinations, edu_type, content in numbered:
            for destination in sorted(destinations):
                key = content["user_id"] if edu_type == SIGNING_KEY_UPDATE else None
                await self.sender.send_edu(destination, edu_type, content, key=key)
        return True

    async def _edus_for(
        self, user_id: str, device_ids: list[str | None]
    ) -> list[tuple[str, dict[str, Any]]]:
        """The EDUs (without stream IDs) for a local user's changed devices; None
        stands for a cross-signing change: the signing keys and every device."""
        mine = await self.e2ee.keys.query("", {user_id: []})
        keys = mine["device_keys"].get(user_id, {})
        existing = await self.e2ee.store.device_ids(user_id)
        out: list[tuple[str, dict[str, Any]]] = []
        wanted: list[str] = []
        for device_id in device_ids:
            if device_id is None:
                signing = {"user_id": user_id}
                for usage in ("master", "self_signing"):
                    key = mine[f"{usage}_keys"].get(user_id)
                    if key is not None:
                        signing[f"{usage}_key"] = key
                out.append((SIGNING_KEY_UPDATE, signing))
                wanted += [d for d in keys if d not in wanted]
            elif device_id not in wanted:
                wanted.append(device_id)
        for device_id in wanted:
            content: dict[str, Any] = {"user_id": user_id, "device_id": device_id}
            if device_id not in existing:
                content["deleted"] = True
            elif device_id in keys:
                content["keys"] = {k: v for k, v in keys[device_id].items() if k != "unsigned"}
            out.append((DEVICE_LIST_UPDATE, content))
        return out

    @staticmethod
    async def _number_txn(
        conn: aiosqlite.Connection,
        planned: list[tuple[str, set[str], list[tuple[str, dict[str, Any]]]]],
        new_position: int,
    ) -> list[tuple[set[str], str, dict[str, Any]]]:
        """Give each m.device_list_update the user's next stream_id (prev_id: the one
        before) and store how far the stream was processed, in one transaction."""
        out = []
        for user_id, destinations, edus in planned:
            async with conn.execute(
                "SELECT stream_id FROM device_list_outbound WHERE user_id = ?", (user_id,)
            ) as cur:
                row = await cur.fetchone()
            last = int(row[0]) if row else 0
            for edu_type, content in edus:
                if edu_type == DEVICE_LIST_UPDATE:
                    content = {**content, "stream_id": last + 1, "prev_id": [last] if last else []}
                    last += 1
                out.append((destinations, edu_type, content))
            await conn.execute(
                "INSERT INTO device_list_outbound (user_id, stream_id) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
                (user_id, last),
            )
        await conn.execute(
            "UPDATE device_list_outbound_position SET position = ? WHERE id = 1", (new_position,)
        )
        return out

    # -- GET /user/devices/{userId} for a local user ---------------------------------------

    async def local_user_devices(self, user_id: str) -> dict[str, Any]:
        """The answer of GET /user/devices for a local user (user_devices.yaml)."""
        mine = await self.e2ee.keys.query("", {user_id: []})
        row = await self.db.fetchone(
            "SELECT stream_id FROM device_list_outbound WHERE user_id = ?", (user_id,)
        )
        devices = [
            {"device_id": device_id, "keys": {k: v for k, v in keys.items() if k != "unsigned"}}
            for device_id, keys in sorted(mine["device_keys"].get(user_id, {}).items())
        ]
        answer: dict[str, Any] = {
            "user_id": user_id,
            "stream_id": int(row[0]) if row else 0,
            "devices": devices,
        }
        for usage in ("master", "self_signing"):
            key = mine[f"{usage}_keys"].get(user_id)
            if key is not None:
                answer[f"{usage}_key"] = key
        return answer
