"""The relations index and its reads, on a real database with hand-made event rows
(other senders, other rooms, rejected and redacted events, ignored users)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiosqlite

from node.events.client_format import to_client_event
from node.relations.service import RelationsService, ignored_users_from
from node.relations.store import RelationsStore
from node.storage.database import Database, bundled_migrations
from node.storage.events import EventStore

ROOM = "!room:x"
ME, YOU, TROLL = "@me:x", "@you:x", "@troll:x"


class Rows:
    """Inserts events rows the way EventStore does (the triggers do the rest)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ts = 1000

    async def add(
        self,
        event_id: str,
        content: dict[str, Any],
        *,
        sender: str = ME,
        etype: str = "m.room.message",
        room: str = ROOM,
        ts: int | None = None,
        rejected: str | None = None,
        redacted_by: str | None = None,
    ) -> None:
        self.ts += 1
        pdu = {"type": etype, "sender": sender, "room_id": room, "content": content}

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT OR IGNORE INTO rooms (room_id, room_version, created_ts)"
                " VALUES (?, '10', 0)",
                (room,),
            )
            await conn.execute(
                "INSERT INTO events (event_id, room_id, type, sender, depth, origin_server_ts,"
                " received_ts, rejected_reason, redacted_by, json)"
                " VALUES (?, ?, ?, ?, 1, ?, 0, ?, ?, ?)",
                (
                    event_id,
                    room,
                    etype,
                    sender,
                    self.ts if ts is None else ts,
                    rejected,
                    redacted_by,
                    json.dumps(pdu).encode(),
                ),
            )

        await self.db.write(txn)


def _rel(rel_type: str, parent: str, **extra: Any) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": rel_type, "event_id": parent, **extra}}


def _edit(parent: str, body: str) -> dict[str, Any]:
    return {"body": f"* {body}", "m.new_content": {"body": body}, **_rel("m.replace", parent)}


async def test_thread_summary_counts_only_visible_replies(db: Database) -> None:
    rows, store = Rows(db), RelationsStore(db)
    await rows.add("$root", {"body": "root"}, sender=YOU)
    await rows.add("$t1", _rel("m.thread", "$root"), sender=YOU)
    await rows.add("$t2", _rel("m.thread", "$root"), sender=ME)
    await rows.add("$t3", _rel("m.thread", "$root"), sender=YOU)
    await rows.add("$troll", _rel("m.thread", "$root"), sender=TROLL)
    await rows.add("$gone", _rel("m.thread", "$root"), redacted_by="$r")
    await rows.add("$bad", _rel("m.thread", "$root"), rejected="auth")
    await rows.add("$elsewhere", _rel("m.thread", "$root"), room="!other:x")

    summaries = await store.thread_summaries(["$root"], ME, {TROLL})
    assert summaries["$root"].count == 3
    assert summaries["$root"].latest_event_id == "$t3"
    assert summaries["$root"].user_replied is True
    with_troll = await store.thread_summaries(["$root"], YOU, set())
    assert with_troll["$root"].count == 4
    assert with_troll["$root"].latest_event_id == "$troll"

    roots = await store.threads(
        ROOM, user_id=TROLL, participated_only=True, upto=None, limit=10, ignored=()
    )
    assert [r.root_id for r in roots] == ["$root"]
    roots = await store.threads(
        ROOM, user_id="@nobody:x", participated_only=True, upto=None, limit=10, ignored=()
    )
    assert roots == []


async def test_latest_edit_rules(db: Database) -> None:
    rows, store = Rows(db), RelationsStore(db)
    await rows.add("$orig", {"body": "v0"})
    await rows.add("$e1", _edit("$orig", "v1"), ts=10)
    await rows.add("$e3", _edit("$orig", "v3"), ts=20)
    await rows.add("$e2", _edit("$orig", "v2"), ts=20)  # same ts: the larger ID wins
    await rows.add("$other_sender", _edit("$orig", "no"), sender=YOU, ts=99)
    await rows.add("$other_type", _edit("$orig", "no"), etype="m.sticker", ts=99)
    await rows.add("$no_new", _rel("m.replace", "$orig"), ts=99)
    assert await store.latest_edits(["$orig"], ()) == {"$orig": "$e3"}


async def test_children_recursion_respects_filters_at_every_step(db: Database) -> None:
    rows, store = Rows(db), RelationsStore(db)
    await rows.add("$p", {"body": "p"})
    await rows.add("$a", _rel("m.reference", "$p"), etype="m.x")
    await rows.add("$b", _rel("m.annotation", "$a", key="k"), etype="m.x")  # via a reference
    await rows.add("$c", _rel("m.reference", "$b"), etype="m.x")
    await rows.add("$d", _rel("m.reference", "$c"), etype="m.x")  # depth 4

    async def ids(**kw: Any) -> list[str]:
        args: dict[str, Any] = {
            "rel_type": None,
            "event_type": None,
            "after": None,
            "upto": None,
            "newest_first": False,
            "limit": 10,
            "depth": 1,
            "ignored": (),
        }
        args.update(kw)
        return [e for e, _ in await store.children(ROOM, "$p", **args)]

    assert await ids() == ["$a"]
    assert await ids(depth=3) == ["$a", "$b", "$c"]
    # $c relates to $p only through $b, an annotation: filtered out with $b.
    assert await ids(depth=3, rel_type="m.reference") == ["$a"]
    assert await ids(depth=3, event_type="m.room.message") == []


async def test_migration_indexes_events_stored_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = [m for m in bundled_migrations() if m.version < 9]
    old = await Database.open(path, migrations=before)
    try:

        async def txn(conn: aiosqlite.Connection) -> None:
            await conn.execute("INSERT INTO rooms VALUES (?, '10', 0)", (ROOM,))
            for i, content in enumerate(
                [{"body": "martian landing"}, {"body": "x", **_rel("m.thread", "$e0")}]
            ):
                pdu = json.dumps({"type": "m.room.message", "content": content}).encode()
                await conn.execute(
                    "INSERT INTO events (event_id, room_id, type, sender, depth,"
                    " origin_server_ts, received_ts, json) VALUES (?, ?, ?, ?, 1, 0, 0, ?)",
                    (f"$e{i}", ROOM, "m.room.message", ME, pdu),
                )

        await old.write(txn)
    finally:
        await old.close()
    db = await Database.open(path)
    try:
        rels = await db.fetchall("SELECT event_id, relates_to_id, rel_type FROM event_relations")
        assert [tuple(r) for r in rels] == [("$e1", "$e0", "m.thread")]
        hits = await db.fetchall(
            "SELECT rowid FROM event_search WHERE event_search MATCH ?", ('"martians"',)
        )
        assert len(hits) == 1
    finally:
        await db.close()


async def test_bundle_leaves_out_ignored_users(db: Database) -> None:
    rows = Rows(db)
    await rows.add("$root", {"body": "root"}, sender=YOU)
    await rows.add("$mine", _rel("m.thread", "$root"), sender=ME)
    await rows.add("$troll", _rel("m.thread", "$root"), sender=TROLL)

    async def account_data(user_id: str, data_type: str) -> Any:
        assert data_type == "m.ignored_user_list"
        return {"ignored_users": {TROLL: {}}} if user_id == ME else None

    events = EventStore(db)
    service = RelationsService(RelationsStore(db), events, ignored_users_from(account_data))
    root = await events.get_event("$root")
    assert root is not None

    async def thread_for(user_id: str) -> dict[str, Any]:
        out = to_client_event(root.event)
        await service.bundle([(root.event, out)], user_id)
        return dict(out["unsigned"]["m.relations"]["m.thread"])

    mine = await thread_for(ME)
    assert (mine["count"], mine["latest_event"]["event_id"]) == (1, "$mine")
    assert mine["current_user_participated"] is True
    theirs = await thread_for(YOU)
    assert (theirs["count"], theirs["latest_event"]["event_id"]) == (2, "$troll")
    assert theirs["current_user_participated"] is True  # YOU sent the root
