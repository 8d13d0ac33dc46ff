"""The partial-history cache's tables (evicted_events, migration 0019, and the events
it takes rows from): plain functions of a ``sqlite3`` connection, for
``Database.write_sync`` / ``read_sync`` and for `croft purge`, which runs them on
its own connection. The policy (when, how many) is node/history/cache.py.

What may leave the cache: a *timeline event* of a room, that is an event placed in
the room's DAG here (not an outlier, with a state group) that is not a state event,
is not one of the room's forward extremities (new events are built on those) and is
not waiting in the federation outbox (federation_outbox_pdus: the sender reads the
JSON it sends from the events table) nor thinned out of it before its destination had
it (federation_outbox_thinned: the destination fetches it when it needs it). State
events, and so every auth chain, stay.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from node.events.canonical import encode_canonical_json
from node.events.pdu import Event

BUDGET = "budget"  # fetched again from peers when /messages reaches it
RETENTION = "retention"  # the room's m.room.retention policy: gone for good
PURGE = "purge"  # `croft purge`: gone for good
REASONS = (BUDGET, RETENTION, PURGE)

# Events moved per write transaction: short enough that sends and /sync, which share
# the writer, never wait long behind an eviction.
EVICT_BATCH = 200

# What makes a stored event (``e``) a timeline event that may leave the cache (see the
# module): the one test of _EVICTABLE, oldest_evictable_sync and evict_sync.
_MAY_LEAVE = (
    "e.state_key IS NULL AND e.outlier = 0"
    " AND EXISTS (SELECT 1 FROM event_state_groups g WHERE g.event_id = e.event_id)"
    " AND NOT EXISTS (SELECT 1 FROM forward_extremities f"
    "   WHERE f.room_id = e.room_id AND f.event_id = e.event_id)"
    " AND NOT EXISTS (SELECT 1 FROM federation_outbox_pdus o WHERE o.event_id = e.event_id)"
    " AND NOT EXISTS (SELECT 1 FROM federation_outbox_thinned t WHERE t.event_id = e.event_id)"
)

# The timeline events of a room that may leave the cache, oldest first. Parameters:
# room ID, then the position they are after.
_EVICTABLE = (
    "SELECT e.stream_ordering, e.event_id, e.origin_server_ts FROM events e"
    f" WHERE e.room_id = ?1 AND e.stream_ordering > ?2 AND {_MAY_LEAVE}"
)


_EVICTED_COLUMNS = (
    "event_id, room_id, stream_ordering, state_group, origin_server_ts, rejected_reason,"
    " soft_failed, redacted_by, reason"
)


@dataclass(frozen=True, slots=True)
class Candidate:
    stream_ordering: int
    event_id: str
    origin_server_ts: int


@dataclass(frozen=True, slots=True)
class Evicted:
    """An evicted event's row: where it was and what was known of it."""

    event_id: str
    room_id: str
    stream_ordering: int
    state_group: int
    origin_server_ts: int
    rejected_reason: str | None
    soft_failed: bool
    redacted_by: str | None
    reason: str


# -- reads -------------------------------------------------------------------------------


def timeline_counts_sync(conn: sqlite3.Connection, room_ids: Iterable[str]) -> dict[str, int]:
    """Timeline events (not state, not outliers) in the cache, by room."""
    return {
        room_id: int(
            conn.execute(
                "SELECT COUNT(*) FROM events"
                " WHERE room_id = ? AND state_key IS NULL AND outlier = 0",
                (room_id,),
            ).fetchone()[0]
        )
        for room_id in dict.fromkeys(room_ids)
    }


def new_timeline_events_sync(conn: sqlite3.Connection, position: int) -> dict[str, int]:
    """Timeline events stored after stream position ``position``, by room."""
    rows = conn.execute(
        "SELECT room_id, COUNT(*) FROM events WHERE stream_ordering > ?"
        " AND state_key IS NULL AND outlier = 0 GROUP BY room_id",
        (position,),
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def evictable_sync(
    conn: sqlite3.Connection,
    room_id: str,
    limit: int,
    *,
    after: int = -(2**63),
    before_ts: int | None = None,
) -> list[Candidate]:
    """Up to ``limit`` timeline events of the room that may leave the cache, oldest
    first, at positions after ``after``; with ``before_ts``, only those sent
    (origin_server_ts) before it."""
    sql = _EVICTABLE
    params: list[object] = [room_id, after]
    if before_ts is not None:
        sql += " AND e.origin_server_ts < ?3"
        params.append(before_ts)
    sql += " ORDER BY e.stream_ordering LIMIT ?" + str(len(params) + 1)
    params.append(limit)
    return [Candidate(int(r[0]), r[1], int(r[2])) for r in conn.execute(sql, params)]


def oldest_evictable_sync(conn: sqlite3.Connection, limit: int) -> list[tuple[str, Candidate]]:
    """Up to ``limit`` evictable timeline events of any room, oldest first (by stream
    ordering): what the store budget takes first."""
    rows = conn.execute(
        "SELECT e.room_id, e.stream_ordering, e.event_id, e.origin_server_ts FROM events e"
        f" WHERE {_MAY_LEAVE}"
        " ORDER BY e.stream_ordering LIMIT ?",
        (limit,),
    ).fetchall()
    return [(r[0], Candidate(int(r[1]), r[2], int(r[3]))) for r in rows]


def refetchable_sync(
    conn: sqlite3.Connection, room_id: str, *, upto: int, limit: int, not_before_ts: int = 0
) -> list[Evicted]:
    """Events of the room that left the cache for its budget, at stream positions up
    to ``upto`` and sent at or after ``not_before_ts`` (a retention horizon), newest
    first: what a backwards page meets first."""
    rows = conn.execute(
        f"SELECT {_EVICTED_COLUMNS} FROM evicted_events"
        " WHERE room_id = ? AND stream_ordering <= ? AND reason = ? AND origin_server_ts >= ?"
        " ORDER BY stream_ordering DESC LIMIT ?",
        (room_id, upto, BUDGET, not_before_ts, limit),
    ).fetchall()
    return [_evicted(r) for r in rows]


def refetchable_above_sync(
    conn: sqlite3.Connection, room_id: str, *, after: int, limit: int, not_before_ts: int = 0
) -> list[int]:
    """The stream positions of up to ``limit`` events of the room that left the cache
    for its budget, after position ``after``, oldest first: what a forwards page meets
    first."""
    rows = conn.execute(
        "SELECT stream_ordering FROM evicted_events"
        " WHERE room_id = ? AND stream_ordering > ? AND reason = ? AND origin_server_ts >= ?"
        " ORDER BY stream_ordering LIMIT ?",
        (room_id, after, BUDGET, not_before_ts, limit),
    ).fetchall()
    return [int(r[0]) for r in rows]


def evicted_sync(conn: sqlite3.Connection, event_ids: Sequence[str]) -> dict[str, Evicted]:
    """The evicted_events rows of ``event_ids``."""
    out: dict[str, Evicted] = {}
    ids = list(dict.fromkeys(event_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for r in conn.execute(
            f"SELECT {_EVICTED_COLUMNS} FROM evicted_events"
            f" WHERE event_id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            out[r[0]] = _evicted(r)
    return out


def _evicted(r: sqlite3.Row | tuple[object, ...]) -> Evicted:
    return Evicted(
        str(r[0]),
        str(r[1]),
        int(r[2]),  # type: ignore[call-overload]
        int(r[3]),  # type: ignore[call-overload]
        int(r[4]),  # type: ignore[call-overload]
        r[5],  # type: ignore[arg-type]
        bool(r[6]),
        r[7],  # type: ignore[arg-type]
        str(r[8]),
    )


def used_bytes_sync(conn: sqlite3.Connection) -> int:
    """Bytes of the database's pages in use (its size less its free pages)."""
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    return (int(pages) - int(free)) * int(size)


def stats_sync(conn: sqlite3.Connection) -> dict[str, int]:
    """What `croft status` shows of the cache."""
    (cached,) = conn.execute(
        "SELECT COUNT(*) FROM events WHERE state_key IS NULL AND outlier = 0"
    ).fetchone()
    counts = dict.fromkeys(REASONS, 0)
    for reason, n in conn.execute("SELECT reason, COUNT(*) FROM evicted_events GROUP BY reason"):
        counts[str(reason)] = int(n)
    return {
        "timeline_events": int(cached),
        "evicted": counts[BUDGET],
        "expired": counts[RETENTION],
        "purged": counts[PURGE],
        "used_bytes": used_bytes_sync(conn),
    }


# -- writes ------------------------------------------------------------------------------


def evict_sync(conn: sqlite3.Connection, event_ids: Sequence[str], reason: str) -> int:
    """Move these events out of the cache (see the module; each is checked again
    here, in the writer's transaction: one that became a forward extremity or was
    queued for sending since it was chosen stays). Returns how many left."""
    if reason not in REASONS:
        raise ValueError(f"unknown eviction reason {reason!r}")
    moved = 0
    ids = list(dict.fromkeys(event_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT e.event_id, e.room_id, e.stream_ordering, g.after_group,"
            " e.origin_server_ts, e.rejected_reason, e.soft_failed, e.redacted_by FROM events e"
            " JOIN event_state_groups g ON g.event_id = e.event_id"
            f" WHERE e.event_id IN ({marks}) AND {_MAY_LEAVE}",
            chunk,
        ).fetchall()
        if not rows:
            continue
        conn.executemany(
            f"INSERT OR REPLACE INTO evicted_events ({_EVICTED_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*tuple(r), reason) for r in rows],
        )
        gone = [(r[0],) for r in rows]
        conn.executemany("DELETE FROM event_auth WHERE event_id = ?", gone)
        conn.executemany("DELETE FROM event_txn_ids WHERE event_id = ?", gone)
        conn.executemany("DELETE FROM event_state_groups WHERE event_id = ?", gone)
        # Triggers drop the event's relations and search entries with it.
        conn.executemany("DELETE FROM events WHERE event_id = ?", gone)
        moved += len(rows)
    return moved


def restore_sync(
    conn: sqlite3.Connection, event: Event, evicted: Evicted, redaction: str | None = None
) -> bool:
    """Put an evicted event fetched again back in the cache, at its old stream
    position with what was known of it (rejection, soft failure, its redaction, or
    ``redaction``: a pending one that arrived while it was out and may apply). False
    when it is not evicted any more (restored meanwhile)."""
    cur = conn.execute(
        "DELETE FROM evicted_events WHERE event_id = ? AND reason = ?",
        (event.event_id, BUDGET),
    )
    if cur.rowcount == 0:
        return False
    redacted_by = evicted.redacted_by or redaction
    if redaction is not None:
        conn.execute("DELETE FROM pending_redactions WHERE redacts = ?", (event.event_id,))
    conn.execute(
        "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,"
        " depth, origin_server_ts, received_ts, rejected_reason, outlier, soft_failed,"
        " redacted_by, json)"
        " VALUES (?, ?, ?, ?, NULL, ?, ?, ?, strftime('%s','now') * 1000, ?, 0, ?, ?, ?)",
        (
            evicted.stream_ordering,
            event.event_id,
            event.room_id,
            event.type,
            event.sender,
            event.depth,
            event.origin_server_ts,
            evicted.rejected_reason,
            int(evicted.soft_failed),
            redacted_by,
            encode_canonical_json(event.raw),
        ),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO event_auth (event_id, auth_id) VALUES (?, ?)",
        [(event.event_id, a) for a in event.auth_event_ids],
    )
    conn.execute(
        "INSERT OR REPLACE INTO event_state_groups (event_id, before_group, after_group)"
        " VALUES (?, ?, ?)",
        (event.event_id, evicted.state_group, evicted.state_group),
    )
    return True


def forget_evicted_sync(conn: sqlite3.Connection, room_id: str, reason: str, before_ts: int) -> int:
    """Mark the room's budget-evicted events sent before ``before_ts`` as gone for
    good (``reason``): retention or a purge reached them."""
    cur = conn.execute(
        "UPDATE evicted_events SET reason = ? WHERE room_id = ? AND reason = ?"
        " AND origin_server_ts < ?",
        (reason, room_id, BUDGET, before_ts),
    )
    return cur.rowcount


def forget_sync(conn: sqlite3.Connection, limit: int) -> int:
    """Forget the ``limit`` oldest events that left the cache (any room, any reason):
    their evicted_events rows and every DAG edge to or from them go, and the room's
    history floor (history_floors) rises to the newest position forgotten. What is
    forgotten is never fetched again: the last resort against max_store_bytes once
    nothing more can leave the cache."""
    rows = conn.execute(
        "SELECT event_id, room_id, stream_ordering FROM evicted_events"
        " ORDER BY stream_ordering LIMIT ?",
        (limit,),
    ).fetchall()
    if not rows:
        return 0
    ids = [(r[0],) for r in rows]
    conn.executemany("DELETE FROM evicted_events WHERE event_id = ?", ids)
    conn.executemany("DELETE FROM event_edges WHERE event_id = ?", ids)
    conn.executemany("DELETE FROM event_edges WHERE prev_event_id = ?", ids)
    floors: dict[str, int] = {}
    for _, room_id, position in rows:
        floors[room_id] = max(floors.get(room_id, position), position)
    conn.executemany(
        "INSERT INTO history_floors (room_id, stream_ordering) VALUES (?, ?)"
        " ON CONFLICT (room_id) DO UPDATE SET stream_ordering ="
        " MAX(stream_ordering, excluded.stream_ordering)",
        list(floors.items()),
    )
    return len(rows)


def history_floor_sync(conn: sqlite3.Connection, room_id: str) -> int | None:
    """The newest position forgotten in the room (:func:`forget_sync`), if any."""
    row = conn.execute(
        "SELECT stream_ordering FROM history_floors WHERE room_id = ?", (room_id,)
    ).fetchone()
    return int(row[0]) if row else None


def vacuum_sync(conn: sqlite3.Connection, pages: int) -> int:
    """Give up to ``pages`` free pages back to the file system (databases made with
    auto_vacuum=INCREMENTAL; a no-op for older ones). Each step of the pragma frees
    one page."""
    (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    if int(mode) != 2:
        return 0
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    n = min(int(free), pages)
    for _ in range(n):
        conn.execute("PRAGMA incremental_vacuum")
    return n
