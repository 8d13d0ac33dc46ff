"""Events and the room DAG (tables: rooms, events, event_edges, event_auth,
forward_extremities, current_state, event_txn_ids).

An event's JSON is stored as the exact bytes that were hashed and signed (or
received), so it can be re-hashed and served verbatim.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiosqlite

from node.events.canonical import encode_canonical_json
from node.events.client_format import to_client_event
from node.events.pdu import MEMBER, Event, StateKey
from node.events.redaction import redact
from node.events.room_versions import RoomVersion, room_version
from node.storage.accounts import now_ms
from node.storage.database import Database, in_thread


class DuplicateTxn(Exception):
    """The transaction ID was used before, for ``event_id`` (see persist_event)."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"transaction ID already used for {event_id}")
        self.event_id = event_id


class MissingPrevEvents(Exception):
    """An event was to be stored on top of prev events that are not (see persist_event)."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: Event
    stream_ordering: int


@dataclass(frozen=True, slots=True)
class TxnKey:
    """A client's transaction ID, scoped to its device (spec: "Transaction identifiers")."""

    user_id: str
    device_id: str
    txn_id: str


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- rooms ---------------------------------------------------------------------------

    async def get_room_version(self, room_id: str) -> RoomVersion | None:
        row = await self.db.read_now(
            lambda conn: conn.execute(
                "SELECT room_version FROM rooms WHERE room_id = ?", (room_id,)
            ).fetchone()
        )
        return room_version(row[0]) if row else None

    # -- writes (run inside Database.write) ---------------------------------------------

    @staticmethod
    async def store_room_txn(conn: aiosqlite.Connection, room_id: str, version: str) -> None:
        await conn.execute(
            "INSERT OR IGNORE INTO rooms (room_id, room_version, created_ts) VALUES (?, ?, ?)",
            (room_id, version, now_ms()),
        )

    @staticmethod
    async def persist_event_txn(
        conn: aiosqlite.Connection,
        event: Event,
        *,
        txn: TxnKey | None = None,
        update_current_state: bool = True,
        apply_redaction_to: str | None = None,
    ) -> int:
        """:func:`persist_event` inside an async ``Database.write`` transaction."""
        return await in_thread(
            conn,
            lambda raw: persist_event(
                raw,
                event,
                txn=txn,
                update_current_state=update_current_state,
                apply_redaction_to=apply_redaction_to,
            ),
        )

    # -- reads ---------------------------------------------------------------------------

    async def get_event(self, event_id: str) -> StoredEvent | None:
        found = await self.get_events([event_id])
        return found.get(event_id)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        return _stored_events(*await self.db.read_now(lambda conn: _event_rows(conn, ids)))

    async def get_event_json(self, event_id: str) -> bytes | None:
        row = await self.db.fetchone("SELECT json FROM events WHERE event_id = ?", (event_id,))
        return bytes(row[0]) if row else None

    async def get_forward_extremities(self, room_id: str) -> list[tuple[str, int]]:
        """(event ID, depth) of the room's forward extremities."""
        rows = await self.db.fetchall(
            "SELECT f.event_id, e.depth FROM forward_extremities f"
            " JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ?"
            " ORDER BY e.depth DESC, e.stream_ordering DESC",
            (room_id,),
        )
        return [(r[0], r[1]) for r in rows]

    async def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        rows = await self.db.read_now(
            lambda conn: conn.execute(
                "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?",
                (room_id,),
            ).fetchall()
        )
        return {(r[0], r[1]): r[2] for r in rows}

    async def get_txn_event_id(self, txn: TxnKey) -> str | None:
        row = await self.db.fetchone(
            "SELECT event_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? AND txn_id = ?",
            (txn.user_id, txn.device_id, txn.txn_id),
        )
        return row[0] if row else None

    async def get_txn_ids(
        self, user_id: str, device_id: str, event_ids: Iterable[str]
    ) -> dict[str, str]:
        """Client transaction IDs (the txnId path segment) of events that ``device_id``
        sent, by event ID; events it did not send are left out. One query per 500 IDs."""
        ids = list(dict.fromkeys(event_ids))

        def read(conn: sqlite3.Connection) -> _Rows:
            return _select_in(
                conn,
                "SELECT event_id, txn_id FROM event_txn_ids"
                " WHERE user_id = ? AND device_id = ? AND event_id IN ({marks})",
                ids,
                (user_id, device_id),
            )

        # txn_id holds the request path (".../send/{type}/{txnId}"); the client's
        # transaction ID is its last segment.
        return {r[0]: r[1].rsplit("/", 1)[-1] for r in await self.db.read_now(read)}

    async def get_rooms_with_member(self, user_id: str, membership: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT c.room_id FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.member' AND c.state_key = ?"
            " AND json_extract(e.json, '$.content.membership') = ?",
            (user_id, membership),
        )
        return [r[0] for r in rows]

    async def get_joined_servers(self, room_id: str) -> set[str]:
        """The servers with at least one joined member in the room's current state."""
        rows = await self.db.read_now(
            lambda conn: conn.execute(
                "SELECT c.state_key FROM current_state c JOIN events e ON e.event_id = c.event_id"
                " WHERE c.room_id = ? AND c.type = 'm.room.member'"
                " AND json_extract(e.json, '$.content.membership') = 'join'",
                (room_id,),
            ).fetchall()
        )
        return {r[0].split(":", 1)[1] for r in rows if ":" in r[0]}

    async def get_servers_sharing_rooms(self, user_id: str) -> set[str]:
        """Every server with a joined member in a room where ``user_id`` is joined."""
        rows = await self.db.read_sync(
            lambda conn: conn.execute(
                "SELECT DISTINCT c.state_key FROM current_state c"
                " JOIN events e ON e.event_id = c.event_id"
                " WHERE c.type = 'm.room.member'"
                " AND json_extract(e.json, '$.content.membership') = 'join'"
                " AND c.room_id IN (SELECT m.room_id FROM current_state m"
                "   JOIN events me ON me.event_id = m.event_id"
                "   WHERE m.type = 'm.room.member' AND m.state_key = ?"
                "   AND json_extract(me.json, '$.content.membership') = 'join')",
                (user_id,),
            ).fetchall()
        )
        return {r[0].split(":", 1)[1] for r in rows if ":" in r[0]}

    async def get_room_events(
        self,
        room_id: str,
        *,
        after: int | None,
        upto: int | None,
        limit: int,
        newest_first: bool,
    ) -> list[StoredEvent]:
        """Timeline events of a room with ``after < stream_ordering <= upto``, at most
        ``limit``, newest or oldest first. Rejected events and outliers are not in it."""
        clauses, params = (
            ["room_id = ?", "outlier = 0", "rejected_reason IS NULL", "soft_failed = 0"],
            [room_id],
        )
        if after is not None:
            clauses.append("stream_ordering > ?")
            params.append(after)  # type: ignore[arg-type]
        if upto is not None:
            clauses.append("stream_ordering <= ?")
            params.append(upto)  # type: ignore[arg-type]
        order = "DESC" if newest_first else "ASC"
        sql = (
            "SELECT event_id FROM events WHERE "
            + " AND ".join(clauses)
            + f" ORDER BY stream_ordering {order} LIMIT ?"
        )

        def read(conn: sqlite3.Connection) -> tuple[list[str], _Rows, _Rows]:
            ids = [r[0] for r in conn.execute(sql, [*params, limit])]
            return (ids, *_event_rows(conn, ids))

        ids, rows, redactions = await self.db.read_now(read)
        found = _stored_events(rows, redactions)
        return [found[i] for i in ids if i in found]

    async def get_state_keys_changed(self, room_id: str, after: int, upto: int) -> set[StateKey]:
        """The (type, state_key) pairs that state events in (after, upto] touched."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT type, state_key FROM events WHERE room_id = ? AND state_key"
            " IS NOT NULL AND outlier = 0 AND rejected_reason IS NULL AND soft_failed = 0"
            " AND stream_ordering > ? AND stream_ordering <= ?",
            (room_id, after, upto),
        )
        return {(r[0], r[1]) for r in rows}

    async def get_membership_changes(
        self, user_id: str, after: int, upto: int
    ) -> dict[str, StoredEvent]:
        """The newest membership event of ``user_id`` per room in (after, upto]."""

        def read(conn: sqlite3.Connection) -> tuple[_Rows, _Rows]:
            return _event_rows(conn, _changed_membership_ids(conn, user_id, after, upto))

        found = _stored_events(*await self.db.read_now(read))
        return {s.event.room_id: s for s in found.values()}

    async def get_user_memberships(self, user_id: str) -> dict[str, StoredEvent]:
        """The user's current membership event in every room that has one."""

        def read(conn: sqlite3.Connection) -> tuple[_Rows, _Rows]:
            return _event_rows(conn, _membership_ids(conn, user_id))

        found = _stored_events(*await self.db.read_now(read))
        return {s.event.room_id: s for s in found.values()}

    async def get_sync_overview(self, user_id: str, after: int | None, upto: int) -> SyncOverview:
        """What a /sync starts from, in one round trip: the user's current membership
        per room, the newest change of it per room in (after, upto] (none when
        ``after`` is None) and the rooms the user forgot."""

        def read(
            conn: sqlite3.Connection,
        ) -> tuple[list[str], list[str], tuple[_Rows, _Rows], set[str]]:
            current = _membership_ids(conn, user_id)
            changed = [] if after is None else _changed_membership_ids(conn, user_id, after, upto)
            forgotten = {
                r[0]
                for r in conn.execute(
                    "SELECT room_id FROM forgotten_rooms WHERE user_id = ?", (user_id,)
                )
            }
            rows = _event_rows(conn, list(dict.fromkeys(current + changed)))
            return current, changed, rows, forgotten

        current, changed, rows, forgotten = await self.db.read_now(read)
        found = _stored_events(*rows)
        return SyncOverview(
            {found[i].event.room_id: found[i] for i in current if i in found},
            {found[i].event.room_id: found[i] for i in changed if i in found},
            forgotten,
        )

    async def get_memberships_at(
        self, user_id: str, room_ids: Iterable[str], position: int
    ) -> dict[str, str]:
        """The user's membership in each room as of stream ``position`` (rooms where it
        had none are left out)."""

        def read(conn: sqlite3.Connection) -> dict[str, str]:
            out: dict[str, str] = {}
            for room_id in room_ids:
                row = conn.execute(
                    "SELECT json_extract(json, '$.content.membership') FROM events"
                    " WHERE room_id = ? AND type = 'm.room.member' AND state_key = ?"
                    " AND outlier = 0 AND rejected_reason IS NULL AND soft_failed = 0"
                    " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1",
                    (room_id, user_id, position),
                ).fetchone()
                if row is not None and isinstance(row[0], str):
                    out[room_id] = row[0]
            return out

        return await self.db.read_now(read)

    async def forget_room(self, user_id: str, room_id: str) -> None:
        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT OR IGNORE INTO forgotten_rooms (user_id, room_id) VALUES (?, ?)",
                (user_id, room_id),
            )

        await self.db.write(txn)

    async def max_stream_ordering(self) -> int:
        row = await self.db.fetchone("SELECT MAX(stream_ordering) FROM events")
        return int(row[0]) if row and row[0] is not None else 0

    async def count_events(self, room_id: str | None = None) -> int:
        if room_id is None:
            row = await self.db.fetchone("SELECT COUNT(*) FROM events")
        else:
            row = await self.db.fetchone(
                "SELECT COUNT(*) FROM events WHERE room_id = ?", (room_id,)
            )
        return int(row[0]) if row else 0


def persist_event(
    conn: sqlite3.Connection,
    event: Event,
    *,
    txn: TxnKey | None = None,
    update_current_state: bool = True,
    apply_redaction_to: str | None = None,
    require_prev_events: bool = False,
    outlier: bool = False,
    soft_failed: bool = False,
    stream_ordering: int | None = None,
    encoded: bytes | None = None,
) -> int:
    """Store an accepted event at the head of its room: the row, its DAG edges, the
    forward extremities and (for state) the current state. Returns its stream
    ordering. A plain function for ``Database.write_sync`` (the writer's thread).

    ``require_prev_events``: refuse (``MissingPrevEvents``) unless every prev event is
    stored. The room service sets it for the events it builds: they are queued on top
    of events not yet committed, and one that failed must take its successors with it
    rather than leave a hole in the DAG.

    ``txn``: the client's transaction ID, recorded first; if it was used before, raises
    ``DuplicateTxn`` with that event's ID and stores nothing.

    ``outlier``: an event known on its own (an auth event or state fetched from a peer),
    not placed in the DAG: no extremities, no current state; stored once (a second
    store is a no-op). An outlier that later arrives as a DAG event is stored again,
    with a new stream ordering. ``soft_failed`` (spec "Soft failure"): placed in the
    DAG but never a forward extremity, and not served to clients.

    ``stream_ordering``: a *historical* event (backfilled: node/federation/backfill.py)
    stored at this explicit position, below every stored one (negative): placed in the
    DAG, but it moves no forward extremity and no current state.

    ``encoded``: the event's canonical JSON, when the caller has it already."""
    if txn is not None:
        try:
            conn.execute(
                "INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts)"
                " VALUES (?, ?, ?, ?, ?)",
                (txn.user_id, txn.device_id, txn.txn_id, event.event_id, now_ms()),
            )
        except sqlite3.IntegrityError:
            row = conn.execute(
                "SELECT event_id FROM event_txn_ids"
                " WHERE user_id = ? AND device_id = ? AND txn_id = ?",
                (txn.user_id, txn.device_id, txn.txn_id),
            ).fetchone()
            if row is None:
                raise
            raise DuplicateTxn(row[0]) from None
    if require_prev_events and event.prev_event_ids:
        prevs = list(dict.fromkeys(event.prev_event_ids))
        marks = ",".join("?" * len(prevs))
        (found,) = conn.execute(
            f"SELECT COUNT(*) FROM events WHERE event_id IN ({marks})", prevs
        ).fetchone()
        if found != len(prevs):
            raise MissingPrevEvents(f"{event.event_id}: a prev event is not stored")
    if outlier:
        row = conn.execute(
            "SELECT stream_ordering FROM events WHERE event_id = ?", (event.event_id,)
        ).fetchone()
        if row is not None:
            return int(row[0])
    elif not require_prev_events:
        # A received event may be stored as an outlier already (fetched as an auth
        # event); events this server builds (require_prev_events) never are.
        conn.execute("DELETE FROM events WHERE event_id = ? AND outlier = 1", (event.event_id,))
    cur = conn.execute(
        "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,"
        " depth, origin_server_ts, received_ts, rejected_reason, outlier, soft_failed, json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            stream_ordering,  # None: the next one (AUTOINCREMENT)
            event.event_id,
            event.room_id,
            event.type,
            event.state_key,
            event.sender,
            event.depth,
            event.origin_server_ts,
            now_ms(),
            event.rejected_reason,
            int(outlier),
            int(soft_failed),
            encoded if encoded is not None else encode_canonical_json(event.raw),
        ),
    )
    stream = int(cur.lastrowid or 0)
    conn.executemany(
        "INSERT OR IGNORE INTO event_edges (event_id, prev_event_id) VALUES (?, ?)",
        [(event.event_id, p) for p in event.prev_event_ids],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO event_auth (event_id, auth_id) VALUES (?, ?)",
        [(event.event_id, a) for a in event.auth_event_ids],
    )
    historical = stream_ordering is not None
    if event.rejected_reason is None and not outlier and not soft_failed and not historical:
        conn.executemany(
            "DELETE FROM forward_extremities WHERE room_id = ? AND event_id = ?",
            [(event.room_id, p) for p in event.prev_event_ids],
        )
        conn.execute(
            "INSERT OR IGNORE INTO forward_extremities (room_id, event_id) VALUES (?, ?)",
            (event.room_id, event.event_id),
        )
        if event.type == MEMBER and event.membership in ("join", "invite", "knock"):
            # Coming back to a forgotten room makes it a room again.
            conn.execute(
                "DELETE FROM forgotten_rooms WHERE user_id = ? AND room_id = ?",
                (event.state_key, event.room_id),
            )
        if update_current_state and event.is_state:
            conn.execute(
                "INSERT OR REPLACE INTO current_state (room_id, type, state_key, event_id)"
                " VALUES (?, ?, ?, ?)",
                (event.room_id, event.type, event.state_key, event.event_id),
            )
    if apply_redaction_to is not None:
        cur = conn.execute(
            "UPDATE events SET redacted_by = ? WHERE event_id = ? AND redacted_by IS NULL",
            (event.event_id, apply_redaction_to),
        )
        if cur.rowcount == 0:
            conn.execute(
                "INSERT OR IGNORE INTO pending_redactions (redacts, redaction_id) VALUES (?, ?)",
                (apply_redaction_to, event.event_id),
            )
    return stream


_Rows = list[sqlite3.Row]


@dataclass(frozen=True, slots=True)
class SyncOverview:
    memberships: dict[str, StoredEvent]  # room ID -> the user's current membership
    changed: dict[str, StoredEvent]  # room ID -> newest membership change in the range
    forgotten: set[str]


def _membership_ids(conn: sqlite3.Connection, user_id: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT event_id FROM current_state WHERE type = 'm.room.member' AND state_key = ?",
            (user_id,),
        )
    ]


def _changed_membership_ids(
    conn: sqlite3.Connection, user_id: str, after: int, upto: int
) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT e.event_id FROM events e JOIN ("
            "  SELECT MAX(stream_ordering) AS newest FROM events"
            "  WHERE type = 'm.room.member' AND state_key = ? AND outlier = 0"
            "  AND rejected_reason IS NULL AND soft_failed = 0 AND stream_ordering > ?"
            "  AND stream_ordering <= ? GROUP BY room_id"
            ") m ON e.stream_ordering = m.newest",
            (user_id, after, upto),
        )
    ]


def _event_rows(conn: sqlite3.Connection, ids: list[str]) -> tuple[_Rows, _Rows]:
    """The stored rows of ``ids`` and of the redactions applied to them (on the
    reader, inside one snapshot: see ``Database.read_now`` and ``read_sync``)."""
    rows = _select_in(
        conn,
        "SELECT e.event_id, e.stream_ordering, e.rejected_reason, e.json,"
        " r.room_version, e.redacted_by"
        " FROM events e JOIN rooms r ON r.room_id = e.room_id"
        " WHERE e.event_id IN ({marks})",
        ids,
    )
    redactions = _select_in(
        conn,
        "SELECT e.event_id, e.json, r.room_version FROM events e"
        " JOIN rooms r ON r.room_id = e.room_id WHERE e.event_id IN ({marks})",
        list({r["redacted_by"] for r in rows if r["redacted_by"]}),
    )
    return rows, redactions


def _select_in(
    conn: sqlite3.Connection, sql: str, values: list[str], before: tuple[str, ...] = ()
) -> _Rows:
    """Run ``sql`` (with ``{marks}`` where the IN list goes, after the ``before``
    parameters) over ``values`` 500 at a time, SQLite's parameter limit in mind."""
    rows: _Rows = []
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        rows += conn.execute(
            sql.format(marks=",".join("?" * len(chunk))), [*before, *chunk]
        ).fetchall()
    return rows


def _stored_events(rows: _Rows, redaction_rows: _Rows) -> dict[str, StoredEvent]:
    redactions = {
        r["event_id"]: Event(r["event_id"], room_version(r["room_version"]), json.loads(r["json"]))
        for r in redaction_rows
    }
    out: dict[str, StoredEvent] = {}
    for row in rows:
        event = Event(
            row["event_id"],
            room_version(row["room_version"]),
            json.loads(row["json"]),
            row["rejected_reason"],
        )
        because = redactions.get(row["redacted_by"])
        if because is not None:
            # Served redacted; the stored JSON keeps what arrived.
            event = redacted_event(event, because)
        out[event.event_id] = StoredEvent(event, row["stream_ordering"])
    return out


def redacted_event(event: Event, because: Event) -> Event:
    """``event`` as it is served once ``because`` (a redaction) applies to it."""
    raw = redact(event.raw, event.room_version)
    raw["unsigned"] = {"redacted_because": to_client_event(because)}
    return Event(event.event_id, event.room_version, raw, event.rejected_reason)


def state_map(
    events: Mapping[str, StoredEvent], ids: Mapping[StateKey, str]
) -> dict[StateKey, Event]:
    """Resolve a state map of IDs into events (IDs that are not stored are left out)."""
    return {key: events[eid].event for key, eid in ids.items() if eid in events}
