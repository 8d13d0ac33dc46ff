"""The room state at every event: state groups (tables: state_groups,
state_group_entries, event_state_groups, room_state_groups).

Federation needs the state *before* an incoming event, which is the resolution of
the states *after* its prev events (spec: server-server-api.md "Checks performed on
receipt of a PDU", step 5), and serves the state at an event (``/state``,
``/state_ids``). Every event placed in a room's DAG therefore records two groups:
the state before it and the state after it (the same group unless it is a state
event). A group is stored as a delta over an earlier group, or in full when the
chain of deltas would grow past ``MAX_CHAIN`` or the delta is no smaller than the
state; reading one walks the chain back to its snapshot in one query.

Group IDs are allocated here, in memory, before the write that stores the group is
committed: a room's sends are pipelined (node/rooms/service.py), so the next event
is built on a group that is still being written. A write that fails leaves an ID
unused, which costs nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from node.events.pdu import StateKey
from node.storage.database import Database

log = logging.getLogger(__name__)

StateIds = dict[StateKey, str]

# How many deltas a group may sit on before a full snapshot is stored instead.
MAX_CHAIN = 64
# How many group states are kept in memory.
CACHE_GROUPS = 128


@dataclass(frozen=True, slots=True)
class NewGroup:
    """A group to be written (see :func:`write_group`)."""

    id: int
    room_id: str
    prev_group: int | None
    chain_length: int
    delta: Mapping[StateKey, str]  # "" removes the key


@dataclass(frozen=True, slots=True)
class EventGroups:
    before: int
    after: int


class StateStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._next_id = 1
        # group ID -> (state, chain length); states are never mutated once cached.
        self._cache: OrderedDict[int, tuple[Mapping[StateKey, str], int]] = OrderedDict()

    async def start(self) -> None:
        """Allocate IDs after the stored ones; give rooms stored before state groups
        existed (schema < 0013) their groups."""
        row = await self.db.fetchone("SELECT MAX(id) FROM state_groups")
        self._next_id = int(row[0] or 0) + 1 if row else 1
        rows = await self.db.fetchall(
            "SELECT room_id FROM rooms WHERE room_id NOT IN (SELECT room_id FROM room_state_groups)"
        )
        for (room_id,) in rows:
            first = self._next_id
            self._next_id = await self.db.write_sync(
                lambda conn, r=room_id, f=first: replay_room_groups(conn, r, f)
            )
            log.info("computed the state groups of %s (stored before schema 0013)", room_id)

    # -- planning groups (no I/O) --------------------------------------------------------

    def plan(
        self,
        room_id: str,
        base: int | None,
        base_state: Mapping[StateKey, str] | None,
        new_state: Mapping[StateKey, str],
    ) -> tuple[int, NewGroup | None]:
        """The group holding ``new_state``: ``base`` itself when nothing changed, else a
        new group (returned, to be written with the event that needs it) as a delta
        over ``base`` (whose state is ``base_state``) or in full."""
        if base is not None and base_state is not None:
            delta = _delta(base_state, new_state)
            if not delta:
                return base, None
            chain = self._chain_length(base)
            if chain is not None and chain < MAX_CHAIN and len(delta) * 2 < len(new_state) + 2:
                return self._new(room_id, base, chain + 1, delta, new_state)
        return self._new(room_id, None, 0, dict(new_state), new_state)

    def _new(
        self,
        room_id: str,
        prev: int | None,
        chain: int,
        delta: Mapping[StateKey, str],
        state: Mapping[StateKey, str],
    ) -> tuple[int, NewGroup]:
        group_id = self._next_id
        self._next_id += 1
        self._remember(group_id, dict(state), chain)
        return group_id, NewGroup(group_id, room_id, prev, chain, delta)

    def _chain_length(self, group_id: int) -> int | None:
        cached = self._cache.get(group_id)
        return cached[1] if cached is not None else None

    def _remember(self, group_id: int, state: Mapping[StateKey, str], chain: int) -> None:
        self._cache[group_id] = (state, chain)
        self._cache.move_to_end(group_id)
        while len(self._cache) > CACHE_GROUPS:
            self._cache.popitem(last=False)

    # -- reads ---------------------------------------------------------------------------

    async def state_ids(self, group_id: int) -> StateIds:
        """The state of a group (a copy the caller may change)."""
        cached = self._cache.get(group_id)
        if cached is not None:
            self._cache.move_to_end(group_id)
            return dict(cached[0])
        state, chain = await self.db.read_now(lambda conn: read_group(conn, group_id))
        self._remember(group_id, state, chain)
        return dict(state)

    async def event_groups(self, event_ids: Iterable[str]) -> dict[str, EventGroups]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}

        def read(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            out: list[sqlite3.Row] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                # An event that left the history cache (node/history) keeps its place
                # in the DAG: one group, as it is not a state event.
                out += conn.execute(
                    "SELECT event_id, before_group, after_group FROM event_state_groups"
                    f" WHERE event_id IN ({marks})"
                    " UNION ALL SELECT event_id, state_group, state_group FROM evicted_events"
                    f" WHERE event_id IN ({marks})",
                    chunk + chunk,
                ).fetchall()
            return out

        return {r[0]: EventGroups(r[1], r[2]) for r in await self.db.read_now(read)}

    async def state_after(self, event_id: str) -> StateIds | None:
        groups = (await self.event_groups([event_id])).get(event_id)
        return None if groups is None else await self.state_ids(groups.after)

    async def state_before(self, event_id: str) -> StateIds | None:
        groups = (await self.event_groups([event_id])).get(event_id)
        return None if groups is None else await self.state_ids(groups.before)

    async def room_group(self, room_id: str) -> int | None:
        """The group of the room's current state."""
        row = await self.db.fetchone(
            "SELECT group_id FROM room_state_groups WHERE room_id = ?", (room_id,)
        )
        return int(row[0]) if row else None


# -- writes (plain functions for Database.write_sync, on the writer's thread) --------------


def write_group(conn: sqlite3.Connection, group: NewGroup) -> None:
    conn.execute(
        "INSERT INTO state_groups (id, room_id, prev_group, chain_length) VALUES (?, ?, ?, ?)",
        (group.id, group.room_id, group.prev_group, group.chain_length),
    )
    conn.executemany(
        "INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES (?, ?, ?, ?)",
        [(group.id, t, k, e) for (t, k), e in group.delta.items()],
    )


def set_event_groups(conn: sqlite3.Connection, event_id: str, before: int, after: int) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO event_state_groups (event_id, before_group, after_group)"
        " VALUES (?, ?, ?)",
        (event_id, before, after),
    )


def set_room_group(conn: sqlite3.Connection, room_id: str, group_id: int) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO room_state_groups (room_id, group_id) VALUES (?, ?)",
        (room_id, group_id),
    )


def read_group(conn: sqlite3.Connection, group_id: int) -> tuple[StateIds, int]:
    """A group's state and chain length, walking its deltas back to the snapshot."""
    rows = conn.execute(
        "WITH RECURSIVE chain(id, prev, n) AS ("
        "  SELECT id, prev_group, 0 FROM state_groups WHERE id = ?"
        "  UNION ALL SELECT g.id, g.prev_group, c.n + 1 FROM state_groups g"
        "  JOIN chain c ON g.id = c.prev"
        ") SELECT c.n, e.type, e.state_key, e.event_id FROM chain c"
        " LEFT JOIN state_group_entries e ON e.group_id = c.id ORDER BY c.n DESC",
        (group_id,),
    ).fetchall()
    if not rows:
        raise KeyError(f"state group {group_id} is not stored")
    state: StateIds = {}
    for _, etype, skey, eid in rows:
        if etype is None:
            continue  # a group with an empty delta
        if eid:
            state[(etype, skey)] = eid
        else:
            state.pop((etype, skey), None)
    return state, int(rows[0][0])


def replay_room_groups(conn: sqlite3.Connection, room_id: str, first_id: int) -> int:
    """Give a room stored before schema 0013 its state groups by replaying its events
    in the order they were stored (Croft's own rooms then had a linear history).
    Returns the next free group ID."""
    next_id = first_id
    state: StateIds = {}
    group: int | None = None
    chain = 0
    rows = conn.execute(
        "SELECT event_id, type, state_key FROM events WHERE room_id = ? AND outlier = 0"
        " AND rejected_reason IS NULL ORDER BY stream_ordering",
        (room_id,),
    ).fetchall()
    for event_id, etype, skey in rows:
        before = group
        if skey is not None or group is None:
            snapshot = group is None or chain >= MAX_CHAIN
            if skey is not None:
                state[(etype, skey)] = event_id
            delta = dict(state) if snapshot else {(etype, skey): event_id}
            chain = 0 if snapshot else chain + 1
            write_group(conn, NewGroup(next_id, room_id, None if snapshot else group, chain, delta))
            group = next_id
            next_id += 1
        set_event_groups(conn, event_id, before if before is not None else group, group)
    if group is None:
        write_group(conn, NewGroup(next_id, room_id, None, 0, {}))
        group = next_id
        next_id += 1
    set_room_group(conn, room_id, group)
    return next_id


def _delta(old: Mapping[StateKey, str], new: Mapping[StateKey, str]) -> dict[StateKey, str]:
    delta = {k: v for k, v in new.items() if old.get(k) != v}
    for k in old:
        if k not in new:
            delta[k] = ""
    return delta
