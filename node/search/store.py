"""Full-text search over the FTS5 index event_search (migration 0009; rowid =
events.stream_ordering), filled after events are stored by node/search/indexer.py
(migration 0021), which the search service catches up before each search.

The caller says which rooms may be searched and up to which position
(:class:`SearchScope`); only timeline events that were neither rejected nor redacted
are returned. ``bm25()`` is lower for a better match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.search.query import Batch
from node.storage.database import Database


@dataclass(frozen=True)
class SearchScope:
    """What one search may look at."""

    # room ID -> last visible position (None: the whole room, the user is in it)
    rooms: Mapping[str, int | None]
    types: Sequence[str]
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()
    contains_url: bool | None = None
    group: tuple[str, str] | None = None  # ("room_id" | "sender", value)


@dataclass(frozen=True, slots=True)
class Hit:
    event_id: str
    stream_ordering: int
    room_id: str
    sender: str
    rank: float  # bm25: lower is better


class SearchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _where(scope: SearchScope) -> tuple[str, list[Any]]:
        clauses = [
            "e.rejected_reason IS NULL AND e.soft_failed = 0",
            "e.outlier = 0",
            "e.redacted_by IS NULL",
        ]
        params: list[Any] = []
        rooms = []
        for room_id, upto in scope.rooms.items():
            if upto is None:
                rooms.append("e.room_id = ?")
                params.append(room_id)
            else:
                rooms.append("(e.room_id = ? AND e.stream_ordering <= ?)")
                params += [room_id, upto]
        clauses.append("(" + " OR ".join(rooms) + ")")
        clauses.append(f"e.type IN ({','.join('?' * len(scope.types))})")
        params += list(scope.types)
        if scope.senders is not None:
            clauses.append(f"e.sender IN ({','.join('?' * len(scope.senders))})")
            params += list(scope.senders)
        if scope.not_senders:
            clauses.append(f"e.sender NOT IN ({','.join('?' * len(scope.not_senders))})")
            params += list(scope.not_senders)
        if scope.contains_url is not None:
            has_url = "json_type(e.json, '$.content.url') = 'text'"
            clauses.append(has_url if scope.contains_url else f"NOT coalesce({has_url}, 0)")
        if scope.group is not None:
            column = "e.room_id" if scope.group[0] == "room_id" else "e.sender"
            clauses.append(f"{column} = ?")
            params.append(scope.group[1])
        return " AND ".join(clauses), params

    async def search(
        self,
        fts: str,
        scope: SearchScope,
        *,
        order_by: str,
        after: Batch | None,
        limit: int,
    ) -> list[Hit]:
        """Matches of ``fts`` in scope, best first (``rank``) or newest first
        (``recent``), starting after ``after``."""
        if not scope.rooms or not scope.types:
            return []
        where, params = self._where(scope)
        if after is not None:
            if order_by == "rank":
                where += " AND (s.rank > ? OR (s.rank = ? AND e.stream_ordering < ?))"
                params += [after.rank, after.rank, after.stream]
            else:
                where += " AND e.stream_ordering < ?"
                params.append(after.stream)
        order = (
            "s.rank ASC, e.stream_ordering DESC"
            if order_by == "rank"
            else ("e.stream_ordering DESC")
        )
        rows = await self.db.fetchall(
            "SELECT e.event_id, e.stream_ordering, e.room_id, e.sender, s.rank FROM"
            " (SELECT rowid, bm25(event_search) AS rank FROM event_search"
            "  WHERE event_search MATCH ?) s"
            " JOIN events e ON e.stream_ordering = s.rowid"
            f" WHERE {where} ORDER BY {order} LIMIT ?",
            [fts, *params, limit],
        )
        return [Hit(r[0], r[1], r[2], r[3], float(r[4])) for r in rows]

    async def count(self, fts: str, scope: SearchScope) -> int:
        if not scope.rooms or not scope.types:
            return 0
        where, params = self._where(scope)
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM event_search s JOIN events e ON e.stream_ordering = s.rowid"
            f" WHERE event_search MATCH ? AND {where}",
            [fts, *params],
        )
        return int(row[0]) if row else 0

    async def rooms_joined_once(self, user_id: str, room_ids: Sequence[str]) -> set[str]:
        """Which of these rooms the user was joined to at some point."""
        if not room_ids:
            return set()
        rows = await self.db.fetchall(
            "SELECT DISTINCT room_id FROM events"
            f" WHERE room_id IN ({','.join('?' * len(room_ids))})"
            " AND type = 'm.room.member' AND state_key = ? AND outlier = 0"
            " AND rejected_reason IS NULL AND soft_failed = 0"
            " AND json_extract(json, '$.content.membership') = 'join'",
            [*room_ids, user_id],
        )
        return {r[0] for r in rows}

    async def encrypted_rooms(self, room_ids: Sequence[str]) -> set[str]:
        """Which of these rooms have m.room.encryption in their current state."""
        if not room_ids:
            return set()
        rows = await self.db.fetchall(
            "SELECT room_id FROM current_state WHERE type = 'm.room.encryption'"
            f" AND state_key = '' AND room_id IN ({','.join('?' * len(room_ids))})",
            list(room_ids),
        )
        return {r[0] for r in rows}
