"""State groups on a real SQLite file: every event a room service stores records the
state before and after it; groups are deltas with bounded chains; rooms stored before
schema 0013 get their groups computed at start."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key

import node.storage.state as state_module
from node.events.pdu import StateKey
from node.events.room_versions import room_version
from node.federation.keys import ServerKey
from node.rooms.creation import RoomRequest
from node.rooms.service import RoomService
from node.storage.database import Database
from node.storage.events import EventStore
from node.storage.state import StateStore, read_group
from node.sync.notifier import Notifier

OWNER = "@owner:groups.test"


async def service(db: Database) -> RoomService:
    states = StateStore(db)
    await states.start()
    key = ServerKey("groups.test", generate_signing_key("g1"))
    return RoomService(db, EventStore(db), key, Notifier(), states)


async def expected_states(db: Database, room_id: str) -> list[tuple[str, dict, dict]]:
    """(event ID, state before, state after) by replaying the room in stream order."""
    rows = await db.fetchall(
        "SELECT event_id, type, state_key FROM events WHERE room_id = ? ORDER BY stream_ordering",
        (room_id,),
    )
    state: dict[StateKey, str] = {}
    out = []
    for event_id, etype, skey in rows:
        before = dict(state)
        if skey is not None:
            state[(etype, skey)] = event_id
        out.append((event_id, before, dict(state)))
    return out


async def test_every_event_records_the_state_before_and_after_it(db: Database) -> None:
    rooms = await service(db)
    room_id = await rooms.create_room(
        RoomRequest(creator=OWNER, room_version=room_version("12"), name="one")
    )
    for i in range(5):
        await rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": f"{i}"})
        await rooms.send(OWNER, room_id, "m.room.topic", {"topic": f"t{i}"}, state_key="")
    states = StateStore(db)  # a fresh store: everything read back from disk
    await states.start()
    replay = await expected_states(db, room_id)
    for event_id, before, after in replay[1:]:  # the create event has no state before it
        assert await states.state_before(event_id) == before, event_id
        assert await states.state_after(event_id) == after, event_id
    current = await rooms.events.get_current_state_ids(room_id)
    group = await states.room_group(room_id)
    assert group is not None
    assert await states.state_ids(group) == current == replay[-1][2]
    # A message does not make a group: it shares the one before it.
    groups = await states.event_groups(e for e, _, _ in replay)
    messages = [e for e, b, a in replay if a == b]
    assert messages and all(groups[m].before == groups[m].after for m in messages)


async def test_deltas_are_bounded_by_a_snapshot(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "MAX_CHAIN", 3)
    rooms = await service(db)
    room_id = await rooms.create_room(RoomRequest(creator=OWNER, room_version=room_version("11")))
    for i in range(10):
        await rooms.send(OWNER, room_id, "m.room.topic", {"topic": f"t{i}"}, state_key="")
    rows = await db.fetchall(
        "SELECT chain_length, prev_group IS NULL FROM state_groups WHERE room_id = ? ORDER BY id",
        (room_id,),
    )
    assert max(r[0] for r in rows) <= 3
    assert sum(1 for r in rows if r[1]) >= 3  # snapshots were taken along the way
    group = await StateStore(db).room_group(room_id)
    state, chain = await db.read_sync(lambda conn: read_group(conn, group))
    assert state == await rooms.events.get_current_state_ids(room_id)
    assert chain <= 3


def test_plan_reuses_a_group_when_nothing_changed_and_removes_keys() -> None:
    states = StateStore(None)  # type: ignore[arg-type]  # planning does no I/O
    base = {("m.room.create", ""): "$c", ("m.room.name", ""): "$n"}
    gid, new = states.plan("!r:x", None, None, base)
    assert new is not None and new.prev_group is None and dict(new.delta) == base
    same, none = states.plan("!r:x", gid, base, dict(base))
    assert (same, none) == (gid, None)
    smaller = {("m.room.create", ""): "$c"}
    gid2, new2 = states.plan("!r:x", gid, base, smaller)
    assert gid2 != gid and new2 is not None
    assert new2.prev_group == gid and dict(new2.delta) == {("m.room.name", ""): ""}


async def test_rooms_from_before_state_groups_get_them_at_start(db: Database) -> None:
    rooms = await service(db)
    room_id = await rooms.create_room(RoomRequest(creator=OWNER, room_version=room_version("10")))
    await rooms.send(OWNER, room_id, "m.room.name", {"name": "old"}, state_key="")
    await rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})

    async def forget(conn) -> None:  # type: ignore[no-untyped-def]
        for table in (
            "state_groups",
            "state_group_entries",
            "event_state_groups",
            "room_state_groups",
        ):
            await conn.execute(f"DELETE FROM {table}")

    await db.write(forget)
    states = StateStore(db)
    await states.start()
    replay = await expected_states(db, room_id)
    for event_id, before, after in replay[1:]:
        assert await states.state_before(event_id) == before
        assert await states.state_after(event_id) == after
    group = await states.room_group(room_id)
    assert group is not None and await states.state_ids(group) == replay[-1][2]
    # New groups are allocated after the replayed ones.
    new_id, _ = states.plan("!x:y", None, None, {("a", ""): "$a"})
    row = await db.fetchone("SELECT MAX(id) FROM state_groups")
    assert new_id > row[0]
