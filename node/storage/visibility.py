"""What the history visibility rules (node/rooms/visibility.py) need from the database.

For a user and a room: the room's ``m.room.history_visibility`` events and the user's
``m.room.member`` events with their stream orderings, the current values of both
(table current_state) and whether the user forgot the room. From those
:class:`~node.rooms.visibility.RoomHistory` answers, for any event of the room, the
history_visibility and the user's membership in force at it: those set by the latest
such event with a smaller stream ordering. (The event itself, when it is one of
them, is judged with the values before and after it, as the spec says.) All of it is
read in one round trip (``Database.read_sync``), for any number of rooms.

Croft keeps only the current state, so "in force at an event" is read off the
stream order. In a room whose history is one line (every room this node creates and
runs on its own) that is exact. Where the DAG forked, the events of the branches are
interleaved by arrival and a change on one branch is taken to apply to the events
of the other that arrived after it: an approximation, the same one that
node/rooms/context.py makes for the state at an event. Rejected events and outliers
never count. Where the history stored here starts after the room's creation (a room
joined over federation, before its past is backfilled), the values in force before
that start are read from the state before its earliest event (its state group) and
apply from :data:`HISTORY_START` on.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from node.events.pdu import MEMBER
from node.rooms.visibility import (
    HISTORY_VISIBILITY,
    SHARED,
    RoomHistory,
    StateAtEvent,
    effective_visibility,
    membership_value,
)
from node.storage.database import Database
from node.storage.state import read_group

# One pass over the room's events (index events_room_stream): about 20 ms for a room
# of 100,000 events. With an index on events (room_id, type, state_key), repeat
# ``room_id = ?`` inside each OR branch and SQLite answers from it (MULTI-INDEX OR);
# without that index the repeated form reads the room twice.
_CHANGES = (
    "SELECT stream_ordering, type, json FROM events"
    " WHERE room_id = ? AND outlier = 0 AND rejected_reason IS NULL AND soft_failed = 0"
    " AND ((type = ? AND state_key = '') OR (type = ? AND state_key = ?))"
    " ORDER BY stream_ordering"
)
_CURRENT = (
    "SELECT e.type, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id"
    " WHERE c.room_id = ? AND ((c.type = ? AND c.state_key = '')"
    " OR (c.type = ? AND c.state_key = ?))"
)
_FORGOTTEN = "SELECT 1 FROM forgotten_rooms WHERE user_id = ? AND room_id = ?"
# Below every stream ordering: where the values in force before the stored history
# go (an event there would be judged by them; none is ever stored there).
HISTORY_START = -(2**62)
# The room's earliest event placed in its DAG here, and the group of the state before it.
_EARLIEST = (
    "SELECT g.before_group FROM events e"
    " JOIN event_state_groups g ON g.event_id = e.event_id"
    " WHERE e.room_id = ? AND e.outlier = 0 AND e.rejected_reason IS NULL AND e.soft_failed = 0"
    " ORDER BY e.stream_ordering LIMIT 1"
)
_Rows = list[tuple[int, str, bytes | str]]


@dataclass(frozen=True)
class Snapshot:
    """Histories by room ID, and the stream orderings of the events asked about (an
    event that is not stored, or is rejected or an outlier, is left out)."""

    rooms: dict[str, RoomHistory]
    positions: dict[str, int]


def _content(raw: bytes | str) -> dict[str, object]:
    try:
        event = json.loads(raw)
    except ValueError:
        return {}
    content = event.get("content") if isinstance(event, dict) else None
    return content if isinstance(content, dict) else {}


def _changes_before_history(conn: sqlite3.Connection, user_id: str, room_id: str) -> _Rows:
    """The history_visibility and ``user_id``'s member event in the state before the
    room's earliest event placed here, as changes at :data:`HISTORY_START`: in a room
    joined over federation the history before the join, or before what was backfilled
    (node/federation/backfill.py), is not stored, and the values in force in it come
    from the state groups (for a room created here that state is empty)."""
    row = conn.execute(_EARLIEST, (room_id,)).fetchone()
    if row is None:
        return []
    (group,) = row
    state, _ = read_group(conn, group)
    ids = [
        eid
        for key, eid in state.items()
        if key == (HISTORY_VISIBILITY, "") or key == (MEMBER, user_id)
    ]
    marks = ",".join("?" * len(ids))
    return [
        (HISTORY_START, r[0], r[1])
        for r in conn.execute(f"SELECT type, json FROM events WHERE event_id IN ({marks})", ids)
    ]


def _load_room(conn: sqlite3.Connection, user_id: str, room_id: str) -> RoomHistory:
    visibility: list[tuple[int, str]] = []
    membership: list[tuple[int, str | None]] = []
    changes = conn.execute(_CHANGES, (room_id, HISTORY_VISIBILITY, MEMBER, user_id)).fetchall()
    for position, kind, raw in [*_changes_before_history(conn, user_id, room_id), *changes]:
        content = _content(raw)
        if kind == HISTORY_VISIBILITY:
            visibility.append((position, effective_visibility(content.get("history_visibility"))))
        else:
            membership.append((position, membership_value(content.get("membership"))))
    current_visibility, current_membership = SHARED, None
    for kind, raw in conn.execute(_CURRENT, (room_id, HISTORY_VISIBILITY, MEMBER, user_id)):
        content = _content(raw)
        if kind == HISTORY_VISIBILITY:
            current_visibility = effective_visibility(content.get("history_visibility"))
        else:
            current_membership = membership_value(content.get("membership"))
    forgotten = conn.execute(_FORGOTTEN, (user_id, room_id)).fetchone() is not None
    return RoomHistory(
        user_id,
        tuple(visibility),
        tuple(membership),
        current_membership,
        current_visibility,
        forgotten,
    )


def _positions(conn: sqlite3.Connection, event_ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT event_id, stream_ordering FROM events WHERE outlier = 0"
            f" AND rejected_reason IS NULL AND soft_failed = 0 AND event_id IN ({marks})",
            chunk,
        )
        out.update((r[0], r[1]) for r in rows)
    return out


class VisibilityStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(
        self, user_id: str, room_ids: Iterable[str], event_ids: Iterable[str] = ()
    ) -> Snapshot:
        """``user_id``'s history of each room, and the positions of ``event_ids``:
        one round trip."""
        rooms = list(dict.fromkeys(room_ids))
        ids = list(dict.fromkeys(event_ids))

        def read(conn: sqlite3.Connection) -> Snapshot:
            histories = {room_id: _load_room(conn, user_id, room_id) for room_id in rooms}
            return Snapshot(histories, _positions(conn, ids) if ids else {})

        return await self.db.read_sync(read)

    async def history(self, room_id: str, user_id: str) -> RoomHistory:
        """``user_id``'s history of ``room_id`` (for an unknown room: nothing, so
        :attr:`RoomHistory.may_read` is false)."""
        return (await self.load(user_id, [room_id])).rooms[room_id]

    async def states_at(
        self, room_id: str, user_id: str, positions: Collection[int]
    ) -> dict[int, StateAtEvent]:
        """The history_visibility and ``user_id``'s membership in force at each of
        the events at ``positions`` (stream orderings) of ``room_id``."""
        history = await self.history(room_id, user_id)
        return {p: history.state_at(p) for p in positions}
