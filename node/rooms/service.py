"""RoomService: create rooms and send events, one lock per room.

Flow of a send (DESIGN.md "Flows"): transaction-ID dedupe -> room lock -> build on
the forward extremities with auth events from the current state -> hash, sign ->
auth check -> persist in one durable transaction (with the transaction ID) ->
update the in-memory room head -> return the event ID.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.errors import MatrixError, bad_json, forbidden
from node.events.canonical import InvalidJson, check_canonical_values
from node.events.pdu import CREATE, Event, StateKey
from node.events.room_versions import RoomVersion
from node.federation.keys import ServerKey
from node.rooms.auth import AuthError, check_auth_rules
from node.rooms.builder import EventTooLarge, build_event, room_id_for_create
from node.rooms.creation import RoomRequest, plan_room
from node.storage.database import Database
from node.storage.events import EventStore, TxnKey, state_map
from node.sync.notifier import Notifier

# How many rooms keep their head (extremities and current state) in memory.
HEAD_CACHE_ROOMS = 64


@dataclass
class RoomHead:
    """What building the next event in a room needs: its version, the forward
    extremities and the current state."""

    room_version: RoomVersion
    extremities: list[tuple[str, int]]
    state: dict[StateKey, Event]

    @property
    def create_event(self) -> Event | None:
        return self.state.get((CREATE, ""))

    def advance(self, event: Event) -> None:
        prev = set(event.prev_event_ids)
        self.extremities = [(event.event_id, event.depth)] + [
            x for x in self.extremities if x[0] not in prev
        ]
        if event.is_state:
            self.state[event.key] = event


class RoomService:
    def __init__(
        self, db: Database, events: EventStore, server_key: ServerKey, notifier: Notifier
    ) -> None:
        self.db = db
        self.events = events
        self.server_key = server_key
        self.notifier = notifier
        self._locks: dict[str, asyncio.Lock] = {}
        self._heads: OrderedDict[str, RoomHead] = OrderedDict()

    def _lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    async def _head(self, room_id: str) -> RoomHead | None:
        head = self._heads.get(room_id)
        if head is not None:
            self._heads.move_to_end(room_id)
            return head
        version = await self.events.get_room_version(room_id)
        if version is None:
            return None
        ids = await self.events.get_current_state_ids(room_id)
        stored = await self.events.get_events(ids.values())
        head = RoomHead(
            version,
            await self.events.get_forward_extremities(room_id),
            state_map(stored, ids),
        )
        self._heads[room_id] = head
        while len(self._heads) > HEAD_CACHE_ROOMS:
            self._heads.popitem(last=False)
        return head

    # -- sending -------------------------------------------------------------------------

    async def send(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        state_key: str | None = None,
        txn: TxnKey | None = None,
    ) -> str:
        """Send an event as the local user ``sender``; returns its event ID once durable."""
        content = _checked_content(content)
        if txn is not None:
            earlier = await self.events.get_txn_event_id(txn)
            if earlier is not None:
                return earlier
        async with self._lock(room_id):
            if txn is not None:  # a retry may have landed while we waited for the lock
                earlier = await self.events.get_txn_event_id(txn)
                if earlier is not None:
                    return earlier
            head = await self._head(room_id)
            if head is None:
                raise forbidden(f"{sender} is not in room {room_id}")
            event = self._build(head, room_id, sender, event_type, content, state_key)
            self._authorise(event, head)
            stream = await self.db.write(
                lambda conn: self.events.persist_event_txn(conn, event, txn=txn)
            )
            head.advance(event)
        self.notifier.notify("events", stream)
        return event.event_id

    def _build(
        self,
        head: RoomHead,
        room_id: str | None,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None,
    ) -> Event:
        try:
            return build_event(
                room_version=head.room_version,
                server_key=self.server_key,
                room_id=room_id,
                sender=sender,
                event_type=event_type,
                content=content,
                state_key=state_key,
                prev_events=head.extremities,
                state=head.state,
                origin_server_ts=int(time.time() * 1000),
            )
        except EventTooLarge as e:
            raise MatrixError(413, "M_TOO_LARGE", str(e)) from None

    @staticmethod
    def _authorise(event: Event, head: RoomHead) -> None:
        auth_events = [e for e in head.state.values() if e.event_id in event.auth_event_ids]
        try:
            check_auth_rules(event, auth_events, head.create_event)
        except AuthError as e:
            raise forbidden(f"Not allowed: {e}") from None

    # -- creating ------------------------------------------------------------------------

    async def create_room(self, req: RoomRequest) -> str:
        """Build and persist the events of a new room in one durable transaction."""
        plan = plan_room(req)
        head = RoomHead(req.room_version, [], {})
        room_id: str | None = None
        if not req.room_version.room_id_is_create_event_id:
            room_id = f"!{secrets.token_urlsafe(12)}:{self.server_key.server_name}"
        built: list[Event] = []
        for planned in plan:
            content = _checked_content(planned.content)
            event = self._build(
                head, room_id, req.creator, planned.type, content, planned.state_key
            )
            if room_id is None:
                room_id = room_id_for_create(event)  # v12: the create event's ID
            self._authorise(event, head)
            head.advance(event)
            built.append(event)
        assert room_id is not None
        final_room_id = room_id

        async def txn(conn: aiosqlite.Connection) -> int:
            await EventStore.store_room_txn(conn, final_room_id, req.room_version.identifier)
            stream = 0
            for event in built:
                stream = await EventStore.persist_event_txn(conn, event)
            return stream

        async with self._lock(room_id):
            stream = await self.db.write(txn)
            self._heads[room_id] = head
        self.notifier.notify("events", stream)
        return room_id


def _checked_content(content: Mapping[str, Any]) -> dict[str, Any]:
    """Event content must be canonical-JSON-safe (room v6+): integers in range, no floats."""
    try:
        checked = check_canonical_values(dict(content))
    except InvalidJson as e:
        raise bad_json(f"Event content is not valid canonical JSON: {e}") from None
    assert isinstance(checked, dict)
    return checked
