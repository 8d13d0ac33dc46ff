"""Events around an event, and the room state at a point of its timeline.

Spec: modules/event_context.md and api/client-server/event_context.yaml (GET
/rooms/{roomId}/context/{eventId}: ``events_before`` newest first, ``events_after``
oldest first, ``start``/``end`` tokens for /messages, and "the state of the room at
the last event returned"); search.yaml uses the same for a result's
``event_context`` and ``include_state``.

Positions are stream orderings; a token ``p<N>`` (node/sync/service.py
pagination_token) is the point just after event N, so /messages going backwards
from ``start`` continues with the event before the first of ``events_before``, and
going forwards from ``end`` with the one after the last of ``events_after``.

State at a position is the room's current state with every key that changed after
that position taken back to its last value at or before it. In a room whose
history is one line (every room this node creates and runs on its own) that is
exactly the state at that point; after a fork resolved by state resolution it is
an approximation that favours the resolved current state where nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.events.pdu import StateKey
from node.storage.database import Database
from node.storage.events import EventStore, StoredEvent
from node.sync.filters import EventFilter

# Larger than any stream ordering.
END_OF_STREAM = 2**62


@dataclass
class Around:
    before: list[StoredEvent]  # newest first
    after: list[StoredEvent]  # oldest first
    start: int  # position for /messages backwards
    end: int  # position for /messages forwards


class ContextService:
    def __init__(self, db: Database, events: EventStore) -> None:
        self.db = db
        self.events = events

    async def around(
        self,
        room_id: str,
        position: int,
        *,
        before: int,
        after: int,
        event_filter: EventFilter,
        upto: int | None = None,
    ) -> Around:
        """Up to ``before`` timeline events before ``position`` and ``after`` events
        after it (none past ``upto``, when given) that pass ``event_filter``."""
        older, start = await self._walk(room_id, position - 1, before, event_filter, None)
        newer, end = await self._walk(room_id, position, after, event_filter, upto, backwards=False)
        return Around(older, newer, start, end)

    async def _walk(
        self,
        room_id: str,
        cursor: int,
        want: int,
        event_filter: EventFilter,
        upto: int | None,
        *,
        backwards: bool = True,
    ) -> tuple[list[StoredEvent], int]:
        """Read ``want`` events that pass the filter from ``cursor``: backwards, the
        cursor is the newest position still to read; forwards (``upto`` given or
        not) it is the last position read. Returns them and the final cursor."""
        picked: list[StoredEvent] = []
        page_size = max(2 * want, 20)
        while len(picked) < want:
            page = await self.events.get_room_events(
                room_id,
                after=None if backwards else cursor,
                upto=cursor if backwards else upto,
                limit=page_size,
                newest_first=backwards,
            )
            for stored in page:
                cursor = stored.stream_ordering - 1 if backwards else stored.stream_ordering
                if event_filter.allows(stored.event.raw):
                    picked.append(stored)
                    if len(picked) == want:
                        break
            if len(page) < page_size:
                break
        return picked, cursor

    async def state_ids_at(self, room_id: str, position: int) -> dict[StateKey, str]:
        """The room state just after the event at ``position`` (see the module notes)."""
        current = await self.events.get_current_state_ids(room_id)
        changed = await self.events.get_state_keys_changed(room_id, position, END_OF_STREAM)
        if not changed:
            return current
        rows = await self.db.fetchall(
            "SELECT type, state_key, event_id, MAX(stream_ordering) FROM events"
            " WHERE room_id = ? AND state_key IS NOT NULL AND outlier = 0"
            " AND rejected_reason IS NULL AND soft_failed = 0 AND stream_ordering <= ?"
            " GROUP BY type, state_key",
            (room_id, position),
        )
        earlier = {(r[0], r[1]): r[2] for r in rows}
        state = {k: v for k, v in current.items() if k not in changed}
        for key in changed:
            if key in earlier:
                state[key] = earlier[key]
        return state
