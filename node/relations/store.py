"""Reads of the relations index (table event_relations, kept by a trigger on events).

A child counts when it is a timeline event of the parent's room that was neither
rejected nor redacted (a redacted child breaks its relationship: "Aggregations of
child events") and was not sent by a user the reader ignores. Order is
stream_ordering, this server's order of the room's events.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from node.relations.aggregations import REFERENCE, REPLACE, THREAD, ThreadSummary
from node.storage.database import Database

# The child row (alias e) is a visible timeline event.
# The aggregation queries start from the parents' children (index event_relations_parent)
# and join each child and its parent by event ID: CROSS JOIN keeps that order. Left to
# itself SQLite may start from the parents and scan the whole room's events for
# children (``e.room_id = p.room_id AND e.stream_ordering <= ?`` suit an index there),
# which made a /messages page of 100 events cost ~0.1 s per 1,000 events in the room.
_VISIBLE = (
    "e.rejected_reason IS NULL AND e.soft_failed = 0 AND e.outlier = 0 AND e.redacted_by IS NULL"
)


def _not_ignored(ignored: Collection[str], upto: int | None = None) -> tuple[str, list[Any]]:
    """SQL that leaves out children from ignored senders and, with ``upto``, children
    after that stream position (what a reader who left the room may not see)."""
    sql, params = "", list(ignored)
    if ignored:
        sql = f" AND e.sender NOT IN ({','.join('?' * len(ignored))})"
    if upto is not None:
        sql += " AND e.stream_ordering <= ?"
        params.append(upto)
    return sql, params


def _marks(items: Sequence[Any]) -> str:
    return ",".join("?" * len(items))


@dataclass(frozen=True, slots=True)
class ThreadRow:
    root_id: str
    latest_ordering: int


class RelationsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def children(
        self,
        room_id: str,
        parent_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        after: int | None,
        upto: int | None,
        newest_first: bool,
        limit: int,
        depth: int,
        ignored: Collection[str],
    ) -> list[tuple[str, int]]:
        """(event ID, stream ordering) of the children of ``parent_id`` in ``after <
        ordering <= upto``; with ``depth`` > 1 also their children, every step matching
        the rel_type and event type filters (spec "Relationships API")."""
        step = [f"e.room_id = ? AND {_VISIBLE}"]
        params: list[Any] = [room_id]
        if rel_type is not None:
            step.append("r.rel_type = ?")
            params.append(rel_type)
        if event_type is not None:
            step.append("e.type = ?")
            params.append(event_type)
        ignore_sql, ignore_params = _not_ignored(ignored)
        outer, outer_params = ["rel.depth > 0"], []
        if after is not None:
            outer.append("e.stream_ordering > ?")
            outer_params.append(after)
        if upto is not None:
            outer.append("e.stream_ordering <= ?")
            outer_params.append(upto)
        order = "DESC" if newest_first else "ASC"
        rows = await self.db.fetchall(
            "WITH RECURSIVE rel(event_id, depth) AS ("
            " SELECT ?, 0"
            " UNION"
            " SELECT r.event_id, rel.depth + 1 FROM rel"
            " JOIN event_relations r ON r.relates_to_id = rel.event_id"
            " JOIN events e ON e.event_id = r.event_id"
            f" WHERE rel.depth < ? AND {' AND '.join(step)}{ignore_sql}"
            ")"
            " SELECT DISTINCT e.event_id, e.stream_ordering FROM rel"
            " JOIN events e ON e.event_id = rel.event_id"
            f" WHERE {' AND '.join(outer)}"
            f" ORDER BY e.stream_ordering {order} LIMIT ?",
            [parent_id, depth, *params, *ignore_params, *outer_params, limit],
        )
        return [(r[0], r[1]) for r in rows]

    async def thread_summaries(
        self,
        parent_ids: Sequence[str],
        user_id: str,
        ignored: Collection[str],
        upto: int | None = None,
    ) -> dict[str, ThreadSummary]:
        if not parent_ids:
            return {}
        ignore_sql, ignore_params = _not_ignored(ignored, upto)
        # With one max() the bare column e.event_id comes from the row holding it.
        rows = await self.db.fetchall(
            "SELECT r.relates_to_id, COUNT(*), SUM(e.sender = ?), MAX(e.stream_ordering),"
            " e.event_id FROM event_relations r"
            " CROSS JOIN events e ON e.event_id = r.event_id"
            " CROSS JOIN events p ON p.event_id = r.relates_to_id"
            f" WHERE r.relates_to_id IN ({_marks(parent_ids)}) AND r.rel_type = ?"
            f" AND e.room_id = p.room_id AND {_VISIBLE}{ignore_sql}"
            " GROUP BY r.relates_to_id",
            [user_id, *parent_ids, THREAD, *ignore_params],
        )
        return {r[0]: ThreadSummary(int(r[1]), r[4], bool(r[2])) for r in rows}

    async def latest_edits(
        self, parent_ids: Sequence[str], ignored: Collection[str], upto: int | None = None
    ) -> dict[str, str]:
        """Per parent, the ID of its most recent edit that passes the edit's side of
        "Validity of replacement events" (same room, sender and type; not state; an
        m.new_content object unless encrypted)."""
        if not parent_ids:
            return {}
        ignore_sql, ignore_params = _not_ignored(ignored, upto)
        rows = await self.db.fetchall(
            "SELECT parent, event_id FROM ("
            " SELECT r.relates_to_id AS parent, e.event_id AS event_id,"
            " ROW_NUMBER() OVER (PARTITION BY r.relates_to_id"
            "   ORDER BY e.origin_server_ts DESC, e.event_id DESC) AS n"
            " FROM event_relations r"
            " CROSS JOIN events e ON e.event_id = r.event_id"
            " CROSS JOIN events p ON p.event_id = r.relates_to_id"
            f" WHERE r.relates_to_id IN ({_marks(parent_ids)}) AND r.rel_type = ?"
            " AND e.room_id = p.room_id AND e.sender = p.sender AND e.type = p.type"
            " AND e.state_key IS NULL AND p.state_key IS NULL"
            " AND (e.type = 'm.room.encrypted'"
            "      OR json_type(e.json, '$.content.\"m.new_content\"') = 'object')"
            f" AND {_VISIBLE}{ignore_sql}"
            ") WHERE n = 1",
            [*parent_ids, REPLACE, *ignore_params],
        )
        return {r[0]: r[1] for r in rows}

    async def references(
        self, parent_ids: Sequence[str], ignored: Collection[str], upto: int | None = None
    ) -> dict[str, list[str]]:
        if not parent_ids:
            return {}
        ignore_sql, ignore_params = _not_ignored(ignored, upto)
        rows = await self.db.fetchall(
            "SELECT r.relates_to_id, e.event_id FROM event_relations r"
            " CROSS JOIN events e ON e.event_id = r.event_id"
            " CROSS JOIN events p ON p.event_id = r.relates_to_id"
            f" WHERE r.relates_to_id IN ({_marks(parent_ids)}) AND r.rel_type = ?"
            f" AND e.room_id = p.room_id AND {_VISIBLE}{ignore_sql}"
            " ORDER BY e.stream_ordering",
            [*parent_ids, REFERENCE, *ignore_params],
        )
        out: dict[str, list[str]] = {}
        for parent, child in rows:
            out.setdefault(parent, []).append(child)
        return out

    async def threads(
        self,
        room_id: str,
        *,
        user_id: str,
        participated_only: bool,
        upto: int | None,
        limit: int,
        ignored: Collection[str],
    ) -> list[ThreadRow]:
        """The room's thread roots, the most recently active first, by the position
        of their latest reply (at most ``upto``)."""
        ignore_sql, ignore_params = _not_ignored(ignored)
        having: list[str] = []
        having_params: list[Any] = []
        if upto is not None:
            having.append("latest <= ?")
            having_params.append(upto)
        if participated_only:
            having.append("(mine > 0 OR p.sender = ?)")
            having_params.append(user_id)
        rows = await self.db.fetchall(
            "SELECT r.relates_to_id, MAX(e.stream_ordering) AS latest,"
            " SUM(e.sender = ?) AS mine, p.sender FROM event_relations r"
            " JOIN events e ON e.event_id = r.event_id"
            " JOIN events p ON p.event_id = r.relates_to_id"
            " WHERE r.rel_type = ? AND e.room_id = ? AND p.room_id = ?"
            " AND p.rejected_reason IS NULL AND p.soft_failed = 0 AND p.outlier = 0"
            f" AND {_VISIBLE}{ignore_sql}"
            " GROUP BY r.relates_to_id"
            + (f" HAVING {' AND '.join(having)}" if having else "")
            + " ORDER BY latest DESC LIMIT ?",
            [user_id, THREAD, room_id, room_id, *ignore_params, *having_params, limit],
        )
        return [ThreadRow(r[0], int(r[1])) for r in rows]

    async def has_annotation(self, parent_id: str, sender: str, event_type: str, key: str) -> bool:
        """Has ``sender`` already annotated ``parent_id`` with this type and key (and
        not redacted it)? Spec: event_annotations.md "Avoiding duplicate annotations"."""
        row = await self.db.fetchone(
            "SELECT 1 FROM event_relations r JOIN events e ON e.event_id = r.event_id"
            " WHERE r.relates_to_id = ? AND r.rel_type = 'm.annotation'"
            " AND r.aggregation_key = ? AND e.sender = ? AND e.type = ?"
            " AND e.rejected_reason IS NULL AND e.soft_failed = 0"
            " AND e.redacted_by IS NULL LIMIT 1",
            (parent_id, key, sender, event_type),
        )
        return row is not None
