"""`croft purge ROOM --before DATE`: delete a room's timeline events sent before a
date from this node, for good (they are not fetched again from peers; peers keep
theirs). It works on the database file directly, whether the node runs or not:
SQLite's locking serialises it with the node's writer, and each batch is its own
short transaction. What node/history/store.py keeps, stays: state events, the
room's newest events (new ones are built on them) and events still waiting to be
sent to a peer.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from node.history import store

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class PurgeError(Exception):
    """A bad argument or a room this node does not know: one line for the user."""


@dataclass(frozen=True, slots=True)
class Purged:
    room_id: str
    before_ms: int
    purged: int  # events whose JSON left the store
    forgotten: int  # events out of the cache already, now never fetched again
    kept: int  # events sent before the date that had to stay


def parse_before(text: str, now: float | None = None) -> int:
    """DATE: an ISO 8601 date or date-time (``2026-01-31``, ``2026-01-31T12:00``,
    local time unless an offset is given) or an age (``30d``, ``12h``, ``90m``,
    ``2w``). Returns milliseconds since the epoch."""
    now = time.time() if now is None else now
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        return int((now - int(relative.group(1)) * _UNITS[relative.group(2)]) * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise PurgeError(
            f"--before {text!r}: not a date (2026-01-31, 2026-01-31T12:00[+02:00]) or an age"
            " (30d, 12h, 90m, 2w)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    stamp = when.astimezone(UTC).timestamp()
    if stamp > now:
        raise PurgeError(f"--before {text!r} is in the future")
    return int(stamp * 1000)


def purge_room(database: Path, room: str, before_ms: int) -> Purged:
    """Purge the room (an ID, or an alias this server hosts) in the database file."""
    if not database.exists():
        raise PurgeError(f"{database}: no database (run `croft init` first)")
    conn = sqlite3.connect(str(database), isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        room_id = _room_id(conn, room)
        purged = 0
        after = -(2**63)
        while True:
            batch = store.evictable_sync(
                conn, room_id, store.EVICT_BATCH, after=after, before_ts=before_ms
            )
            if not batch:
                break
            conn.execute("BEGIN IMMEDIATE")
            try:
                purged += store.evict_sync(conn, [c.event_id for c in batch], store.PURGE)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            after = batch[-1].stream_ordering
        conn.execute("BEGIN IMMEDIATE")
        forgotten = store.forget_evicted_sync(conn, room_id, store.PURGE, before_ms)
        conn.execute("COMMIT")
        (kept,) = conn.execute(
            "SELECT COUNT(*) FROM events WHERE room_id = ? AND state_key IS NULL"
            " AND outlier = 0 AND origin_server_ts < ?",
            (room_id, before_ms),
        ).fetchone()
        conn.execute("BEGIN IMMEDIATE")
        store.vacuum_sync(conn, 1 << 20)
        conn.execute("COMMIT")
        return Purged(room_id, before_ms, purged, forgotten, int(kept))
    finally:
        conn.close()


def _room_id(conn: sqlite3.Connection, room: str) -> str:
    if room.startswith("#"):
        row = conn.execute(
            "SELECT room_id FROM room_aliases WHERE room_alias = ?", (room,)
        ).fetchone()
        if row is None:
            raise PurgeError(f"{room}: no such alias on this server")
        room = str(row[0])
    elif not room.startswith("!"):
        raise PurgeError(f"ROOM {room!r}: not a room ID (!...) or an alias (#...)")
    if conn.execute("SELECT 1 FROM rooms WHERE room_id = ?", (room,)).fetchone() is None:
        raise PurgeError(f"{room}: this node has no such room")
    return room
