"""The push tables (migration 0004_push): push_rules, push_default_rule_changes,
pushers, push_notifications, push_unread_counts.

Spec: content/client-server-api/modules/push.md ("Push Rules: API" ordering with
``before``/``after``, "Receiving notifications", "Marking notifications as read"),
api/client-server/pusher.yaml and notifications.yaml.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.push.rules import Action, DefaultRuleChange, PushRule
from node.storage.accounts import now_ms
from node.storage.database import Database


class AnchorNotFound(LookupError):
    """A ``before``/``after`` rule ID that is not a user-defined rule of the kind."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id


@dataclass(frozen=True, slots=True)
class Pusher:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    device_id: str | None = None
    pushkey_ts: int = 0  # ms

    def to_json(self) -> dict[str, Any]:
        """The Pusher object of GET /pushers."""
        out: dict[str, Any] = {
            "pushkey": self.pushkey,
            "kind": self.kind,
            "app_id": self.app_id,
            "app_display_name": self.app_display_name,
            "device_display_name": self.device_display_name,
            "lang": self.lang,
            "data": self.data,
        }
        if self.profile_tag is not None:
            out["profile_tag"] = self.profile_tag
        return out


@dataclass(frozen=True, slots=True)
class Notification:
    stream_ordering: int
    room_id: str
    event_id: str
    actions: list[Action]
    highlight: bool
    ts: int
    read: bool


def place_rule(
    order: Sequence[str], rule_id: str, *, before: str | None, after: str | None
) -> list[str]:
    """The new order of a kind's user rules after putting ``rule_id``.

    pushrules.yaml PUT: with ``before`` the rule becomes the next more important rule
    than ``before`` (``before`` wins over ``after``); with ``after`` the next less
    important one; with neither, a new rule becomes the most important and an existing
    one keeps its place."""
    anchor = before if before is not None else after
    if anchor is None:
        return list(order) if rule_id in order else [rule_id, *order]
    if anchor == rule_id or anchor not in order:
        raise AnchorNotFound(anchor)
    rest = [r for r in order if r != rule_id]
    at = rest.index(anchor) + (0 if before is not None else 1)
    return [*rest[:at], rule_id, *rest[at:]]


class PushStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- rules ---------------------------------------------------------------------------

    async def get_user_rules(self, user_id: str) -> list[PushRule]:
        """The user's own rules, each kind in priority order."""
        rows = await self.db.fetchall(
            "SELECT kind, rule_id, enabled, conditions, pattern, actions FROM push_rules"
            " WHERE user_id = ? ORDER BY kind, position",
            (user_id,),
        )
        return [
            PushRule(
                r["kind"],
                r["rule_id"],
                json.loads(r["actions"]),
                json.loads(r["conditions"]),
                r["pattern"],
                default=False,
                enabled=bool(r["enabled"]),
            )
            for r in rows
        ]

    async def get_default_changes(self, user_id: str) -> dict[tuple[str, str], DefaultRuleChange]:
        rows = await self.db.fetchall(
            "SELECT kind, rule_id, enabled, actions FROM push_default_rule_changes"
            " WHERE user_id = ?",
            (user_id,),
        )
        return {
            (r["kind"], r["rule_id"]): DefaultRuleChange(
                None if r["enabled"] is None else bool(r["enabled"]),
                None if r["actions"] is None else json.loads(r["actions"]),
            )
            for r in rows
        }

    async def put_rule(
        self, user_id: str, rule: PushRule, *, before: str | None, after: str | None
    ) -> None:
        """Create or update a user rule (an update keeps its ``enabled``), placing it
        as :func:`place_rule` says. Raises :class:`AnchorNotFound`."""

        async def txn(conn: aiosqlite.Connection) -> None:
            async with conn.execute(
                "SELECT rule_id FROM push_rules WHERE user_id = ? AND kind = ? ORDER BY position",
                (user_id, rule.kind),
            ) as cur:
                order = [r[0] for r in await cur.fetchall()]
            new_order = place_rule(order, rule.rule_id, before=before, after=after)
            await conn.execute(
                "INSERT INTO push_rules (user_id, kind, rule_id, position, enabled, conditions,"
                " pattern, actions) VALUES (?, ?, ?, 0, 1, ?, ?, ?)"
                " ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
                " conditions = excluded.conditions, pattern = excluded.pattern,"
                " actions = excluded.actions",
                (
                    user_id,
                    rule.kind,
                    rule.rule_id,
                    json.dumps(rule.conditions),
                    rule.pattern,
                    json.dumps(rule.actions),
                ),
            )
            await conn.executemany(
                "UPDATE push_rules SET position = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                [(pos, user_id, rule.kind, rid) for pos, rid in enumerate(new_order)],
            )

        await self.db.write(txn)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> bool:
        async def txn(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(
                "DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
                (user_id, kind, rule_id),
            )
            return cur.rowcount > 0

        return await self.db.write(txn)

    async def set_user_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        enabled: bool | None = None,
        actions: list[Action] | None = None,
    ) -> bool:
        """Change a user rule's enabled flag or actions; False if there is no such rule."""

        async def txn(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(
                "UPDATE push_rules SET enabled = COALESCE(?, enabled),"
                " actions = COALESCE(?, actions) WHERE user_id = ? AND kind = ? AND rule_id = ?",
                (
                    None if enabled is None else int(enabled),
                    None if actions is None else json.dumps(actions),
                    user_id,
                    kind,
                    rule_id,
                ),
            )
            return cur.rowcount > 0

        return await self.db.write(txn)

    async def change_default_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        enabled: bool | None = None,
        actions: list[Action] | None = None,
    ) -> None:
        """Record the user's change to a server-default rule (None keeps the current)."""

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO push_default_rule_changes (user_id, kind, rule_id, enabled, actions)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET"
                " enabled = COALESCE(excluded.enabled, enabled),"
                " actions = COALESCE(excluded.actions, actions)",
                (
                    user_id,
                    kind,
                    rule_id,
                    None if enabled is None else int(enabled),
                    None if actions is None else json.dumps(actions),
                ),
            )

        await self.db.write(txn)

    # -- pushers -------------------------------------------------------------------------

    async def get_pushers(self, user_id: str) -> list[Pusher]:
        rows = await self.db.fetchall(
            "SELECT * FROM pushers WHERE user_id = ? ORDER BY app_id, pushkey", (user_id,)
        )
        return [
            Pusher(
                r["user_id"],
                r["app_id"],
                r["pushkey"],
                r["kind"],
                r["app_display_name"],
                r["device_display_name"],
                r["profile_tag"],
                r["lang"],
                json.loads(r["data"]),
                r["device_id"],
                r["pushkey_ts"],
            )
            for r in rows
        ]

    async def add_pusher(self, pusher: Pusher, *, append: bool) -> None:
        """Create or update the user's pusher with this app_id and pushkey. Without
        ``append``, the same app_id and pushkey of other users are removed."""

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name,"
                " device_display_name, profile_tag, lang, data, device_id, pushkey_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET kind = excluded.kind,"
                " app_display_name = excluded.app_display_name,"
                " device_display_name = excluded.device_display_name,"
                " profile_tag = excluded.profile_tag, lang = excluded.lang,"
                " data = excluded.data, device_id = excluded.device_id,"
                " pushkey_ts = excluded.pushkey_ts",
                (
                    pusher.user_id,
                    pusher.app_id,
                    pusher.pushkey,
                    pusher.kind,
                    pusher.app_display_name,
                    pusher.device_display_name,
                    pusher.profile_tag,
                    pusher.lang,
                    json.dumps(pusher.data),
                    pusher.device_id,
                    pusher.pushkey_ts,
                ),
            )
            if not append:
                await conn.execute(
                    "DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?",
                    (pusher.app_id, pusher.pushkey, pusher.user_id),
                )

        await self.db.write(txn)

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        async def txn(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(
                "DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                (user_id, app_id, pushkey),
            )
            return cur.rowcount > 0

        return await self.db.write(txn)

    async def delete_pushers_with_key(self, app_id: str, pushkey: str) -> int:
        """Remove every pusher with this app_id and pushkey (a gateway rejected it)."""

        async def txn(conn: aiosqlite.Connection) -> int:
            cur = await conn.execute(
                "DELETE FROM pushers WHERE app_id = ? AND pushkey = ?", (app_id, pushkey)
            )
            return cur.rowcount

        return await self.db.write(txn)

    async def delete_pushers_of_gone_devices(self, user_id: str | None) -> int:
        """Remove the pushers whose device no longer exists (logged out or deleted), of
        ``user_id`` or, with None, of every user. A pusher with no recorded device is
        kept: nothing says which session it belongs to."""
        sql = (
            "DELETE FROM pushers WHERE device_id IS NOT NULL AND NOT EXISTS (SELECT 1"
            " FROM devices d WHERE d.user_id = pushers.user_id"
            " AND d.device_id = pushers.device_id)"
        )
        args: tuple[str, ...] = ()
        if user_id is not None:
            sql += " AND user_id = ?"
            args = (user_id,)

        async def txn(conn: aiosqlite.Connection) -> int:
            cur = await conn.execute(sql, args)
            return cur.rowcount

        return await self.db.write(txn)

    # -- notifications and unread counts -------------------------------------------------

    async def add_notification(
        self, user_id: str, event_id: str, actions: list[Action], highlight: bool
    ) -> bool:
        """Record that a persisted event notified the user and count it as unread
        (unless it is at or before the event read up to). False when the event is not
        stored or was already recorded."""

        def txn(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT stream_ordering, room_id FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
            if row is None:
                return False
            return add_notification_sync(
                conn, user_id, event_id, row[0], row[1], actions, highlight
            )

        return await self.db.write_sync(txn)

    async def get_unread_counts(self, user_id: str, room_id: str) -> tuple[int, int]:
        row = await self.db.read_now(
            lambda conn: conn.execute(
                "SELECT notification_count, highlight_count FROM push_unread_counts"
                " WHERE user_id = ? AND room_id = ?",
                (user_id, room_id),
            ).fetchone()
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def get_total_unread(self, user_id: str) -> int:
        """The user's unread notifications across the rooms it is joined to (the
        gateway's ``unread``; a room it left no longer counts)."""
        row = await self.db.fetchone(
            "SELECT COALESCE(SUM(u.notification_count), 0) FROM push_unread_counts u"
            " JOIN current_state c ON c.room_id = u.room_id AND c.type = 'm.room.member'"
            " AND c.state_key = u.user_id JOIN events e ON e.event_id = c.event_id"
            " WHERE u.user_id = ? AND json_extract(e.json, '$.content.membership') = 'join'",
            (user_id,),
        )
        return int(row[0]) if row else 0

    async def mark_read(self, user_id: str, room_id: str, event_id: str) -> bool:
        """Count the room's notifications again from after ``event_id``. Read markers
        only move forward: an event at or before the current one changes nothing.
        Returns whether the counts' starting point moved."""

        async def txn(conn: aiosqlite.Connection) -> bool:
            async with conn.execute(
                "SELECT stream_ordering FROM events WHERE event_id = ? AND room_id = ?",
                (event_id, room_id),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return False
            stream = int(row[0])
            async with conn.execute(
                "SELECT since_stream FROM push_unread_counts WHERE user_id = ? AND room_id = ?",
                (user_id, room_id),
            ) as cur:
                current = await cur.fetchone()
            if current is not None and stream <= current[0]:
                return False
            async with conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(highlight), 0) FROM push_notifications"
                " WHERE user_id = ? AND room_id = ? AND stream_ordering > ?",
                (user_id, room_id, stream),
            ) as cur:
                counts = await cur.fetchone()
            assert counts is not None
            await conn.execute(
                "INSERT OR REPLACE INTO push_unread_counts (user_id, room_id,"
                " notification_count, highlight_count, since_event_id, since_stream)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, room_id, counts[0], counts[1], event_id, stream),
            )
            return True

        return await self.db.write(txn)

    async def get_notifications(
        self, user_id: str, *, before: int | None, limit: int, only_highlight: bool
    ) -> list[Notification]:
        """The user's notifications, newest first, older than stream ``before``."""
        sql = (
            "SELECT n.stream_ordering, n.room_id, n.event_id, n.actions, n.highlight, n.ts,"
            " COALESCE(c.since_stream, 0) AS since FROM push_notifications n"
            " LEFT JOIN push_unread_counts c ON c.user_id = n.user_id AND c.room_id = n.room_id"
            " WHERE n.user_id = ?"
        )
        params: list[Any] = [user_id]
        if before is not None:
            sql += " AND n.stream_ordering < ?"
            params.append(before)
        if only_highlight:
            sql += " AND n.highlight = 1"
        sql += " ORDER BY n.stream_ordering DESC LIMIT ?"
        params.append(limit)
        rows = await self.db.fetchall(sql, params)
        return [
            Notification(
                r["stream_ordering"],
                r["room_id"],
                r["event_id"],
                json.loads(r["actions"]),
                bool(r["highlight"]),
                r["ts"],
                r["stream_ordering"] <= r["since"],
            )
            for r in rows
        ]

    async def prune_notifications(self, *, older_than_ts: int, keep: int) -> int:
        """Delete read notifications that are older than ``older_than_ts`` (ms) or not
        among each user's newest ``keep``; return how many went.

        Only read ones go: those at or before the room's read position
        (``push_unread_counts.since_stream``, the same test as the ``read`` flag of
        GET /notifications). The unread counts are the notifications after that
        position (:meth:`mark_read` counts them again from there, and the position
        only moves forward), so deleting read ones cannot change a count."""

        async def txn(conn: aiosqlite.Connection) -> int:
            async with conn.execute("SELECT DISTINCT user_id FROM push_notifications") as cur:
                users = [r[0] for r in await cur.fetchall()]
            deleted = 0
            for user_id in users:
                # The stream position of the user's newest notification past ``keep``.
                async with conn.execute(
                    "SELECT stream_ordering FROM push_notifications WHERE user_id = ?"
                    " ORDER BY stream_ordering DESC LIMIT 1 OFFSET ?",
                    (user_id, keep),
                ) as cur:
                    row = await cur.fetchone()
                beyond_keep = -1 if row is None else int(row[0])
                cur = await conn.execute(
                    "DELETE FROM push_notifications WHERE user_id = ?"
                    " AND (ts < ? OR stream_ordering <= ?)"
                    " AND stream_ordering <= COALESCE((SELECT c.since_stream"
                    " FROM push_unread_counts c WHERE c.user_id = push_notifications.user_id"
                    " AND c.room_id = push_notifications.room_id), 0)",
                    (user_id, older_than_ts, beyond_keep),
                )
                deleted += cur.rowcount
            return deleted

        return await self.db.write(txn)


def add_notification_sync(
    conn: sqlite3.Connection,
    user_id: str,
    event_id: str,
    stream: int,
    room_id: str,
    actions: list[Action],
    highlight: bool,
) -> bool:
    """:meth:`PushStore.add_notification` for an event at ``stream`` in ``room_id``,
    inside a write job (the event's own, for events received from other servers)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO push_notifications (user_id, stream_ordering, room_id,"
        " event_id, actions, highlight, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, stream, room_id, event_id, json.dumps(actions), int(highlight), now_ms()),
    )
    if cur.rowcount == 0:
        return False
    conn.execute(
        "INSERT INTO push_unread_counts (user_id, room_id, notification_count,"
        " highlight_count) VALUES (?, ?, 1, ?) ON CONFLICT (user_id, room_id) DO UPDATE"
        " SET notification_count = notification_count + 1,"
        " highlight_count = highlight_count + excluded.highlight_count"
        " WHERE since_stream < ?",
        (user_id, room_id, int(highlight), stream),
    )
    return True
