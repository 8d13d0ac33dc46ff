"""Reading a room's DAG for other servers: stored PDUs, auth chains, and the walks
behind ``/backfill`` and ``/get_missing_events`` (tables: events, event_edges,
event_auth, current_state, rooms).

Spec: content/server-server-api.md "Backfilling and retrieving missing events",
"Retrieving events" and "Retrieving event authorisation information";
api/server-server/backfill.yaml, events.yaml, event_auth.yaml. Walk orders follow
Synapse where the spec is silent (see :func:`backfill_ids_txn` and
:func:`missing_event_ids_txn`).

A PDU is served from the JSON stored for it, redacted when a redaction was applied
here (``events.redacted_by``), without ``unsigned.redacted_because``.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.events.redaction import redact
from node.events.room_versions import RoomVersion, room_version
from node.storage.database import Database

# Events a walk may look at (emitted or passed through) per event it may return:
# bounds the work a request causes when the DAG holds long runs of rejected events.
VISIT_FACTOR = 10


@dataclass(frozen=True, slots=True)
class StoredPdu:
    event_id: str
    room_id: str
    room_version: RoomVersion
    raw: Mapping[str, Any]  # the JSON stored for the event
    redacted: bool  # a redaction of it was applied here
    outlier: bool
    rejected: bool
    depth: int
    stream_ordering: int

    @property
    def pdu(self) -> Mapping[str, Any]:
        """The PDU as it is served to another server (without ``unsigned``: what this
        server keeps there, such as an invite's room state, is its own)."""
        pdu = redact(self.raw, self.room_version) if self.redacted else self.raw
        if "unsigned" in pdu:
            pdu = {k: v for k, v in pdu.items() if k != "unsigned"}
        return pdu


@dataclass(frozen=True, slots=True)
class _Node:
    """One event of a walk."""

    event_id: str
    depth: int
    stream_ordering: int
    outlier: bool
    rejected: bool


class DagStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_pdus(self, event_ids: Iterable[str]) -> dict[str, StoredPdu]:
        """The stored events among ``event_ids`` (of any room, outliers and rejected
        events included)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        rows = await self.db.read_sync(lambda conn: _pdu_rows(conn, ids))
        return {r["event_id"]: _stored_pdu(r) for r in rows}

    async def current_state_content(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> Mapping[str, Any] | None:
        """The content of a current state event of the room (redacted if a redaction
        was applied to it), or None when the room has no such state."""
        row = await self.db.fetchone(
            "SELECT event_id FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?",
            (room_id, event_type, state_key),
        )
        if row is None:
            return None
        stored = (await self.get_pdus([row[0]])).get(row[0])
        if stored is None:
            return None
        content = stored.pdu.get("content")
        return content if isinstance(content, Mapping) else {}

    async def auth_chain_ids(
        self, room_id: str, version: RoomVersion, seeds: Iterable[str]
    ) -> list[str]:
        """The auth chain of ``seeds``: their auth events, and theirs, recursively (a
        seed is in it only if another seed's chain reaches it). Only events stored
        in ``room_id`` and not rejected. From room v12 the create event, which
        ``auth_events`` no longer list, is part of every event's auth chain."""
        seed_list = list(dict.fromkeys(seeds))
        if not seed_list:
            return []
        create_id = None
        if version.room_id_is_create_event_id:
            create_id = "$" + room_id[1:]
            if all(s == create_id for s in seed_list):
                create_id = None  # the create event has no auth events
        return await self.db.read_sync(
            lambda conn: auth_chain_ids_txn(conn, room_id, seed_list, create_id)
        )

    async def backfill_ids(self, room_id: str, seeds: Sequence[str], limit: int) -> list[str]:
        return await self.db.read_sync(lambda conn: backfill_ids_txn(conn, room_id, seeds, limit))

    async def missing_event_ids(
        self,
        room_id: str,
        earliest: Sequence[str],
        latest: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> list[str]:
        return await self.db.read_sync(
            lambda conn: missing_event_ids_txn(conn, room_id, earliest, latest, limit, min_depth)
        )


# -- plain functions on a sqlite3 connection (the reader thread) ---------------------------


def _pdu_rows(conn: sqlite3.Connection, ids: list[str]) -> list[sqlite3.Row]:
    rows: list[sqlite3.Row] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows += conn.execute(
            "SELECT e.event_id, e.room_id, r.room_version, e.json, e.redacted_by, e.outlier,"
            " e.rejected_reason, e.depth, e.stream_ordering"
            " FROM events e JOIN rooms r ON r.room_id = e.room_id"
            f" WHERE e.event_id IN ({','.join('?' * len(chunk))})",
            chunk,
        ).fetchall()
    return rows


def _stored_pdu(row: sqlite3.Row) -> StoredPdu:
    return StoredPdu(
        event_id=row["event_id"],
        room_id=row["room_id"],
        room_version=room_version(row["room_version"]),
        raw=json.loads(row["json"]),
        redacted=row["redacted_by"] is not None,
        outlier=bool(row["outlier"]),
        rejected=row["rejected_reason"] is not None,
        depth=int(row["depth"]),
        stream_ordering=int(row["stream_ordering"]),
    )


def auth_chain_ids_txn(
    conn: sqlite3.Connection, room_id: str, seeds: list[str], create_id: str | None
) -> list[str]:
    rows = conn.execute(
        "WITH RECURSIVE chain(id) AS ("
        "  SELECT a.auth_id FROM event_auth a"
        "  WHERE a.event_id IN (SELECT value FROM json_each(?))"
        "  UNION"
        "  SELECT a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.id"
        ") SELECT e.event_id FROM chain c JOIN events e ON e.event_id = c.id"
        " WHERE e.room_id = ? AND e.rejected_reason IS NULL"
        " ORDER BY e.depth, e.stream_ordering",
        (json.dumps(seeds), room_id),
    ).fetchall()
    ids = [r[0] for r in rows]
    if create_id is not None and create_id not in ids:
        found = conn.execute(
            "SELECT 1 FROM events WHERE event_id = ? AND room_id = ? AND rejected_reason IS NULL",
            (create_id, room_id),
        ).fetchone()
        if found is not None:
            ids.insert(0, create_id)
    return ids


_NODE_COLUMNS = "e.event_id, e.depth, e.stream_ordering, e.outlier, e.rejected_reason"


def _node(row: sqlite3.Row | tuple[Any, ...]) -> _Node:
    return _Node(row[0], int(row[1]), int(row[2]), bool(row[3]), row[4] is not None)


def _nodes(conn: sqlite3.Connection, room_id: str, ids: Iterable[str]) -> list[_Node]:
    """The stored events among ``ids`` that are in ``room_id``."""
    ids = list(dict.fromkeys(ids))
    found: list[_Node] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found += [
            _node(r)
            for r in conn.execute(
                f"SELECT {_NODE_COLUMNS} FROM events e WHERE e.room_id = ?"
                f" AND e.event_id IN ({','.join('?' * len(chunk))})",
                [room_id, *chunk],
            )
        ]
    return found


def _prev_nodes(conn: sqlite3.Connection, room_id: str, event_id: str) -> list[_Node]:
    """The stored prev events of ``event_id`` in ``room_id``, outliers left out (they
    are not part of the room's DAG here: no state is known at them)."""
    return [
        _node(r)
        for r in conn.execute(
            f"SELECT {_NODE_COLUMNS} FROM event_edges x"
            " JOIN events e ON e.event_id = x.prev_event_id"
            " WHERE x.event_id = ? AND e.room_id = ? AND e.outlier = 0",
            (event_id, room_id),
        )
    ]


def backfill_ids_txn(
    conn: sqlite3.Connection, room_id: str, seeds: Sequence[str], limit: int
) -> list[str]:
    """``/backfill``: the seed events and those before them, newest first.

    As Synapse: a walk of ``prev_events`` from the seeds that always takes the
    deepest event not yet taken (ties: the one stored last), until ``limit`` events
    are taken. Seeds must be stored in the room. Outliers and rejected events are
    not returned; the walk passes through rejected events (and outlier seeds)."""
    if limit <= 0:
        return []
    heap: list[tuple[int, int, str, _Node]] = []
    for n in _nodes(conn, room_id, seeds):
        heapq.heappush(heap, (-n.depth, -n.stream_ordering, n.event_id, n))
    taken: list[_Node] = []
    seen: set[str] = set()
    while heap and len(taken) < limit and len(seen) < limit * VISIT_FACTOR:
        *_, n = heapq.heappop(heap)
        if n.event_id in seen:
            continue
        seen.add(n.event_id)
        if not n.outlier and not n.rejected:
            taken.append(n)
        for p in _prev_nodes(conn, room_id, n.event_id):
            if p.event_id not in seen:
                heapq.heappush(heap, (-p.depth, -p.stream_ordering, p.event_id, p))
    taken.sort(key=lambda n: (-n.depth, -n.stream_ordering))
    return [n.event_id for n in taken]


def missing_event_ids_txn(
    conn: sqlite3.Connection,
    room_id: str,
    earliest: Sequence[str],
    latest: Sequence[str],
    limit: int,
    min_depth: int,
) -> list[str]:
    """``/get_missing_events``: a breadth-first walk of ``prev_events`` back from
    ``latest`` (which are not returned themselves) that skips ``earliest``, events
    below ``min_depth`` and outliers (and does not walk past them), and stops at
    ``limit`` events. Oldest first (by depth, then the order stored), which is the
    order the requesting server processes them in. Rejected events are walked
    through but not returned."""
    if limit <= 0:
        return []
    seen = set(earliest)
    front = [n for n in _nodes(conn, room_id, latest) if n.event_id not in seen]
    seen.update(n.event_id for n in front)
    found: list[_Node] = []
    visited = 0
    while front and len(found) < limit and visited < limit * VISIT_FACTOR:
        next_front: list[_Node] = []
        for n in front:
            visited += 1
            for p in _prev_nodes(conn, room_id, n.event_id):
                if p.event_id in seen:
                    continue
                seen.add(p.event_id)
                if p.depth < min_depth:
                    continue
                next_front.append(p)
                if not p.rejected:
                    found.append(p)
                    if len(found) >= limit:
                        break
            if len(found) >= limit:
                break
        front = next_front
    found.sort(key=lambda n: (n.depth, n.stream_ordering))
    return [n.event_id for n in found]
