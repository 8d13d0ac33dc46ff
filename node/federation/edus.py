"""Inbound EDUs: checking each one from a transaction and handing it to its area.

Spec: content/server-server-api.md "EDUs", "Typing Notifications" (the user must be in
the room and belong to the sending server), "Receipts" (only update what the EDU
lists), "Presence", "Device Management" (``m.device_list_update``), "End-to-End
Encryption" (``m.signing_key_update``), "Send-to-device messaging"
(``m.direct_to_device``); api/server-server/definitions/event-schemas/m.*.yaml.

The PUT /send handler calls :meth:`EduHandler.handle` for each EDU of a transaction. A
peer is untrusted and an EDU has no answer of its own: a malformed EDU, one about a
user of another server than the origin, or one for a room the origin has no joined
member in, is logged and dropped; :meth:`~EduHandler.handle` never raises. Unknown
EDU types are ignored (the spec lets servers add their own).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from node.ephemeral.presence import PRESENCE_STATES, PresenceService
from node.ephemeral.receipts import READ, ReceiptService
from node.ephemeral.typing import TypingService
from node.federation.remote_e2ee import (
    BadData,
    DeviceListUpdate,
    RemoteE2EE,
    check_cross_signing_key,
    check_device_keys,
)
from node.ids import InvalidId, RoomID, UserID
from node.storage.accounts import now_ms
from node.storage.database import Database
from node.storage.events import EventStore

log = logging.getLogger(__name__)

# How long a remote user's typing lasts unless their server says more (Synapse's
# FEDERATION_TIMEOUT; servers repeat m.typing while the user keeps typing).
REMOTE_TYPING_TIMEOUT_MS = 60_000
MAX_MESSAGE_ID_CHARS = 255  # the spec says 32; be lenient, but bounded

Handler = Callable[[str, Mapping[str, Any]], Awaitable[None]]


# -- checking fields (pure) ------------------------------------------------------------


def _str(content: Mapping[str, Any], name: str) -> str:
    value = content.get(name)
    if not isinstance(value, str):
        raise BadData(f"'{name}' must be a string")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def user_of(origin: str, user_id: Any, name: str = "user_id") -> str:
    """A user ID of the origin server (the spec: EDUs speak for the origin's users)."""
    if not isinstance(user_id, str):
        raise BadData(f"'{name}' must be a user ID")
    try:
        parsed = UserID.parse(user_id)
    except InvalidId as e:
        raise BadData(f"'{name}': {e}") from None
    if parsed.domain != origin:
        raise BadData(f"{user_id} does not belong to {origin}")
    return user_id


def room_of(room_id: Any) -> str:
    if not isinstance(room_id, str):
        raise BadData("room IDs must be strings")
    try:
        RoomID.parse(room_id)
    except InvalidId as e:
        raise BadData(str(e)) from None
    return room_id


def parse_device_list_update(origin: str, content: Mapping[str, Any]) -> DeviceListUpdate:
    """m.device_list_update (event-schemas/m.device_list_update.yaml)."""
    user_id = user_of(origin, content.get("user_id"))
    device_id = _str(content, "device_id")
    stream_id = content.get("stream_id")
    if not isinstance(stream_id, int) or isinstance(stream_id, bool):
        raise BadData("'stream_id' must be an integer")
    prev = content.get("prev_id", [])
    if prev is None:
        prev = []
    if not isinstance(prev, list) or not all(_is_int(p) for p in prev):
        raise BadData("'prev_id' must be a list of integers")
    deleted = content.get("deleted", False)
    if not isinstance(deleted, bool):
        raise BadData("'deleted' must be a boolean")
    keys = content.get("keys")
    checked = None if keys is None or deleted else check_device_keys(keys, user_id, device_id)
    return DeviceListUpdate(user_id, device_id, stream_id, tuple(prev), deleted, checked)


def parse_signing_key_update(
    origin: str, content: Mapping[str, Any]
) -> tuple[str, dict[str, dict[str, Any]]]:
    """m.signing_key_update: (user ID, {usage: key})."""
    user_id = user_of(origin, content.get("user_id"))
    keys = {}
    for usage in ("master", "self_signing"):
        key = content.get(f"{usage}_key")
        if key is not None:
            keys[usage] = check_cross_signing_key(key, user_id, usage)
    return user_id, keys


def parse_to_device_messages(messages: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """``messages``: user ID -> device ID or ``*`` -> content object."""
    if not isinstance(messages, dict):
        raise BadData("'messages' must be an object")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for user_id, by_device in messages.items():
        if not isinstance(by_device, dict):
            raise BadData(f"'messages.{user_id}' must be an object")
        out[user_id] = {d: c for d, c in by_device.items() if isinstance(c, dict)}
    return out


# -- the handler -------------------------------------------------------------------------


class EduHandler:
    def __init__(
        self,
        db: Database,
        events: EventStore,
        typing: TypingService,
        receipts: ReceiptService,
        presence: PresenceService,
        remote: RemoteE2EE,
    ) -> None:
        self.db = db
        self.events = events
        self.typing = typing
        self.receipts = receipts
        self.presence = presence
        self.remote = remote
        self.handlers: dict[str, Handler] = {
            "m.typing": self.on_typing,
            "m.receipt": self.on_receipt,
            "m.presence": self.on_presence,
            "m.direct_to_device": self.on_direct_to_device,
            "m.device_list_update": self.on_device_list_update,
            "m.signing_key_update": self.on_signing_key_update,
        }

    async def handle(self, origin: str, edu: Mapping[str, Any]) -> None:
        """Handle one EDU of a transaction from ``origin``; never raises."""
        try:
            edu_type = edu.get("edu_type") if isinstance(edu, Mapping) else None
            content = edu.get("content") if isinstance(edu, Mapping) else None
            if not isinstance(edu_type, str) or not isinstance(content, Mapping):
                raise BadData("an EDU needs 'edu_type' and a 'content' object")
            handler = self.handlers.get(edu_type)
            if handler is None:
                log.debug("EDU %s from %s: unknown type, ignored", edu_type, origin)
                return
            await handler(origin, content)
        except BadData as e:
            log.info("EDU from %s dropped: %s", origin, e)
        except Exception:
            log.exception("EDU from %s failed", origin)

    async def _membership(self, room_id: str, user_id: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT json_extract(e.json, '$.content.membership') FROM current_state c"
                " JOIN events e ON e.event_id = c.event_id WHERE c.room_id = ?"
                " AND c.type = 'm.room.member' AND c.state_key = ?",
                (room_id, user_id),
            ).fetchone()
            return row[0] if row else None

        return await self.db.read_now(read)

    # -- m.typing ------------------------------------------------------------------------

    async def on_typing(self, origin: str, content: Mapping[str, Any]) -> None:
        room_id = room_of(content.get("room_id"))
        user_id = user_of(origin, content.get("user_id"))
        typing = content.get("typing")
        if not isinstance(typing, bool):
            raise BadData("'typing' must be a boolean")
        if await self._membership(room_id, user_id) != "join":
            raise BadData(f"m.typing: {user_id} is not joined to {room_id}")
        self.typing.set_typing(room_id, user_id, typing, REMOTE_TYPING_TIMEOUT_MS)

    # -- m.receipt -----------------------------------------------------------------------

    async def on_receipt(self, origin: str, content: Mapping[str, Any]) -> None:
        for raw_room, by_type in content.items():
            room_id = room_of(raw_room)
            if not isinstance(by_type, dict):
                raise BadData(f"m.receipt: {room_id} must map receipt types")
            if origin not in await self.events.get_joined_servers(room_id):
                log.info("m.receipt from %s for %s: no member there; dropped", origin, room_id)
                continue
            # Only public read receipts travel; m.read.private never leaves its server.
            by_user = by_type.get(READ)
            if not isinstance(by_user, dict):
                continue
            for raw_user, receipt in by_user.items():
                try:
                    await self._one_receipt(origin, room_id, raw_user, receipt)
                except BadData as e:
                    log.info("m.receipt from %s in %s dropped: %s", origin, room_id, e)

    async def _one_receipt(self, origin: str, room_id: str, raw_user: str, receipt: Any) -> None:
        user_id = user_of(origin, raw_user)
        if not isinstance(receipt, dict):
            raise BadData("a receipt must be an object")
        event_ids = receipt.get("event_ids")
        if not isinstance(event_ids, list) or not all(isinstance(e, str) for e in event_ids):
            raise BadData("'event_ids' must be a list of event IDs")
        data = receipt.get("data")
        data = data if isinstance(data, dict) else {}
        raw_ts = data.get("ts")
        ts = raw_ts if isinstance(raw_ts, int) and not isinstance(raw_ts, bool) else now_ms()
        thread_id = data.get("thread_id")
        if thread_id is not None and (not isinstance(thread_id, str) or not thread_id):
            raise BadData("'thread_id' must be a non-empty string")
        for event_id in event_ids[:10]:
            await self.receipts.remote_receipt(room_id, user_id, event_id, thread_id, ts)

    # -- m.presence ----------------------------------------------------------------------

    async def on_presence(self, origin: str, content: Mapping[str, Any]) -> None:
        if not self.presence.enabled:
            return
        push = content.get("push")
        if not isinstance(push, list):
            raise BadData("m.presence: 'push' must be a list")
        for update in push:
            try:
                await self._one_presence(origin, update)
            except BadData as e:
                log.info("m.presence from %s dropped: %s", origin, e)

    async def _one_presence(self, origin: str, update: Any) -> None:
        if not isinstance(update, dict):
            raise BadData("a presence update must be an object")
        user_id = user_of(origin, update.get("user_id"))
        presence = update.get("presence")
        if presence not in PRESENCE_STATES:
            raise BadData(f"unknown presence {presence!r}")
        ago = update.get("last_active_ago", 0)
        status_msg = update.get("status_msg")
        active = update.get("currently_active", False)
        if not _is_int(ago) or ago < 0:
            raise BadData("'last_active_ago' must be a non-negative integer")
        if status_msg is not None and not isinstance(status_msg, str):
            raise BadData("'status_msg' must be a string")
        if not await self.remote.tracked(user_id):
            return  # shares no room with a local user: no one here may see it
        self.presence.set_remote(user_id, presence, status_msg, ago, active is True)

    # -- m.direct_to_device --------------------------------------------------------------

    async def on_direct_to_device(self, origin: str, content: Mapping[str, Any]) -> None:
        sender = user_of(origin, content.get("sender"), "sender")
        event_type = _str(content, "type")
        message_id = _str(content, "message_id")
        if not message_id or len(message_id) > MAX_MESSAGE_ID_CHARS:
            raise BadData("'message_id' must be a short non-empty string")
        messages = parse_to_device_messages(content.get("messages"))
        if not await self.remote.on_direct_to_device(
            origin, sender, event_type, message_id, messages
        ):
            log.debug("m.direct_to_device %s from %s: a repeat", message_id, origin)

    # -- device lists and cross-signing keys ---------------------------------------------

    async def on_device_list_update(self, origin: str, content: Mapping[str, Any]) -> None:
        await self.remote.on_device_list_update(parse_device_list_update(origin, content))

    async def on_signing_key_update(self, origin: str, content: Mapping[str, Any]) -> None:
        user_id, keys = parse_signing_key_update(origin, content)
        if keys:
            await self.remote.on_signing_key_update(user_id, keys)
