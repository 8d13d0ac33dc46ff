"""Receipts and read markers.

Spec: content/client-server-api/modules/receipts.md and api/client-server/receipts.yaml
(POST /rooms/{roomId}/receipt/{receiptType}/{eventId}); modules/read_markers.md and
read_markers.yaml (POST /rooms/{roomId}/read_markers).

- Receipt types: ``m.read``, ``m.read.private`` (v1.4; never shown to anyone but its
  owner) and ``m.fully_read``, which is not a receipt but the read marker: it is kept
  as the room account data ``m.fully_read`` (``{"event_id": ...}``).
- Each (user, type, thread) has one receipt ("Events"); ``thread_id`` is absent
  (unthreaded), ``main`` or a thread root's event ID ("Threaded read receipts"). A
  receipt only moves forward: one for an earlier event than the current one is
  accepted and changes nothing (as Synapse does). The read marker moves forward too.
- receipts.yaml 400 M_INVALID_PARAM: a ``thread_id`` that is not a non-empty string,
  given with ``m.fully_read``, or that the event is not related to
  (:func:`event_fits_thread`).
- The owner's receipts of the room's read position reset the unread counts ("Receiving
  notifications"): :meth:`PushService.mark_read` for ``m.read`` and ``m.read.private``
  that are unthreaded or on the main timeline (unread counts are per room, not per
  thread, so a receipt inside a thread leaves them as they are).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from node.ephemeral.receipt_store import UNTHREADED, ReceiptStore
from node.errors import invalid_param, not_found
from node.push.service import PushService
from node.rooms.auth_common import server_of
from node.storage.accounts import now_ms
from node.storage.events import EventStore, StoredEvent
from node.sync.notifier import Notifier
from node.users.account_data import AccountDataService

log = logging.getLogger(__name__)

STREAM = "receipts"
READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE)
MAIN_THREAD = "main"
THREAD_REL = "m.thread"
# receipts.md "Threaded read receipts": follow at most 3 relations.
MAX_RELATION_HOPS = 3

# (room, user, receipt type, event ID, thread ID or None, ts): ReceiptService.on_receipt.
ReceiptHook = Callable[[str, str, str, str, str | None, int], Awaitable[None]]

# The relation (rel_type, parent event ID) of an event, or None.
RelationLookup = Callable[[str], Awaitable[tuple[str, str] | None]]


def relation_of(content: Mapping[str, Any]) -> tuple[str, str] | None:
    """``content["m.relates_to"]`` as (rel_type, event_id), if it is well formed."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, Mapping):
        return None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    if isinstance(rel_type, str) and isinstance(parent, str):
        return rel_type, parent
    return None


async def event_fits_thread(event_id: str, thread_id: str, relation: RelationLookup) -> bool:
    """May a receipt for ``thread_id`` be on ``event_id``?

    The event is in a thread if it, or an event it relates to (at most 3 hops), has an
    ``m.thread`` relation; then only that thread fits. Otherwise it is on the main
    timeline: ``main`` fits, and so does a thread whose root is the event or one it
    relates to (a thread root and its reactions belong to both, as in Synapse)."""
    chain = [event_id]  # the event, then the events it relates to
    while True:
        rel = await relation(chain[-1])
        if rel is None:
            break
        rel_type, parent = rel
        if rel_type == THREAD_REL:
            return parent == thread_id
        if len(chain) > MAX_RELATION_HOPS:
            break
        chain.append(parent)
    return thread_id == MAIN_THREAD or thread_id in chain


def check_thread_id(receipt_type: str, body: dict[str, Any]) -> str | None:
    """The request's ``thread_id`` (None: unthreaded), or M_INVALID_PARAM. A null
    ``thread_id`` counts as absent (matrix-nio sends one for unthreaded receipts)."""
    thread_id = body.get("thread_id")
    if thread_id is None:
        return None
    if not isinstance(thread_id, str) or not thread_id:
        raise invalid_param("thread_id field must be a non-empty string")
    if receipt_type == FULLY_READ:
        raise invalid_param(f"thread_id is not compatible with {FULLY_READ}")
    return thread_id


def check_receipt_type(receipt_type: str) -> None:
    if receipt_type not in (*RECEIPT_TYPES, FULLY_READ):
        raise invalid_param(
            f"Unknown receipt type {receipt_type!r}: use {READ}, {READ_PRIVATE} or {FULLY_READ}"
        )


class ReceiptService:
    def __init__(
        self,
        store: ReceiptStore,
        events: EventStore,
        notifier: Notifier,
        push: PushService,
        account_data: AccountDataService,
    ) -> None:
        self.store = store
        self.events = events
        self.notifier = notifier
        self.push = push
        self.account_data = account_data
        # Called after a local user's receipt moved: (room, user, receipt type, event,
        # thread or None, ts). The federation side sends m.read receipts on.
        self.on_receipt: list[ReceiptHook] = []

    async def post_receipt(
        self,
        room_id: str,
        user_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
    ) -> None:
        """POST /receipt/{receiptType}/{eventId} for a user joined to the room."""
        check_receipt_type(receipt_type)
        await self._room_event(room_id, event_id)
        if thread_id is not None and not await event_fits_thread(
            event_id, thread_id, self._relation_in(room_id)
        ):
            raise invalid_param(f"event_id {event_id} is not related to thread {thread_id}")
        if receipt_type == FULLY_READ:
            await self.set_fully_read(room_id, user_id, event_id)
        else:
            await self._receipt(room_id, user_id, receipt_type, event_id, thread_id)

    async def set_read_markers(self, room_id: str, user_id: str, markers: dict[str, str]) -> None:
        """POST /read_markers: ``markers`` maps m.fully_read, m.read and m.read.private
        to event IDs; every event is checked before anything changes."""
        for event_id in markers.values():
            await self._room_event(room_id, event_id)
        if FULLY_READ in markers:
            await self.set_fully_read(room_id, user_id, markers[FULLY_READ])
        for receipt_type in RECEIPT_TYPES:
            if receipt_type in markers:
                await self._receipt(room_id, user_id, receipt_type, markers[receipt_type], None)

    async def set_fully_read(self, room_id: str, user_id: str, event_id: str) -> None:
        """Move the ``m.fully_read`` room account data forward to ``event_id``."""
        current = await self.account_data.get(user_id, FULLY_READ, room_id)
        current_id = current.get("event_id") if current else None
        if isinstance(current_id, str):
            if current_id == event_id:
                return
            found = await self.events.get_events([current_id, event_id])
            old, new = found.get(current_id), found.get(event_id)
            if old is not None and new is not None and new.stream_ordering <= old.stream_ordering:
                return
        await self.account_data.put(user_id, FULLY_READ, {"event_id": event_id}, room_id)

    async def _receipt(
        self,
        room_id: str,
        user_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
    ) -> None:
        ts = now_ms()
        stream_id = await self.store.put(
            room_id, user_id, receipt_type, thread_id or UNTHREADED, event_id, ts
        )
        if stream_id is None:
            return  # not after the current receipt
        local = server_of(user_id) == self.push.server_name
        if thread_id in (None, MAIN_THREAD) and local:
            await self.push.mark_read(room_id, user_id, event_id)
        self.notifier.notify(STREAM, stream_id)
        if local:
            for hook in self.on_receipt:
                try:
                    await hook(room_id, user_id, receipt_type, event_id, thread_id, ts)
                except Exception:
                    log.exception("receipt hook %r failed", hook)

    async def remote_receipt(
        self, room_id: str, user_id: str, event_id: str, thread_id: str | None, ts: int
    ) -> bool:
        """An m.read receipt of a user on another server (an m.receipt EDU); False if
        the event is unknown or not after the user's current receipt."""
        stream_id = await self.store.put(
            room_id, user_id, READ, thread_id or UNTHREADED, event_id, ts
        )
        if stream_id is None:
            return False
        self.notifier.notify(STREAM, stream_id)
        return True

    async def _room_event(self, room_id: str, event_id: str) -> StoredEvent:
        stored = await self.events.get_event(event_id)
        if stored is None or stored.event.room_id != room_id or stored.event.rejected:
            raise not_found(f"Event {event_id} not found in room {room_id}")
        return stored

    def _relation_in(self, room_id: str) -> RelationLookup:
        async def relation(event_id: str) -> tuple[str, str] | None:
            stored = await self.events.get_event(event_id)
            if stored is None or stored.event.room_id != room_id:
                return None
            return relation_of(stored.event.content)

        return relation
