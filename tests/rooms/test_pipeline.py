"""The room service's pipelined sends, on a real SQLite file: events are built on the
in-memory head and committed afterwards, in order. When a write fails, or turns out to
repeat a transaction ID from before a restart, the events queued on top of it are
built again; the stored DAG never has a hole and nothing is stored twice.

The writer is held on a threading.Event so that every send is queued before the first
commit: the interleavings are deterministic, not a matter of timing."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest
from signedjson.key import generate_signing_key

import node.rooms.service as service_module
from node.errors import MatrixError
from node.events.pdu import Event
from node.events.room_versions import room_version
from node.federation.keys import ServerKey
from node.rooms.creation import RoomRequest
from node.rooms.service import RoomService
from node.storage.database import Database
from node.storage.events import EventStore, TxnKey
from node.storage.state import StateStore
from node.sync.notifier import Notifier

OWNER = "@owner:pipe.test"


@pytest.fixture
def key() -> ServerKey:
    return ServerKey("pipe.test", generate_signing_key("p1"))


async def new_service(db: Database, key: ServerKey) -> RoomService:
    """A room service with empty memory, as after a restart."""
    states = StateStore(db)
    await states.start()
    return RoomService(db, EventStore(db), key, Notifier(), states)


async def hold_writer(db: Database) -> threading.Event:
    """Block the writer thread until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def wait(conn: sqlite3.Connection) -> None:
        started.set()
        assert gate.wait(30)

    db.submit_sync(wait)
    assert await asyncio.to_thread(started.wait, 30)
    return gate


async def queued_then_released(
    db: Database, gate: threading.Event, sends: list[asyncio.Task[Any]], expected: int
) -> list[Any]:
    """Wait until ``expected`` writes are queued behind the held one, then let go."""
    for _ in range(3000):
        if db._queue.qsize() >= expected:
            break
        await asyncio.sleep(0.001)
    assert db._queue.qsize() >= expected, "the sends were not all queued"
    gate.set()
    return await asyncio.gather(*sends, return_exceptions=True)


async def assert_dag_intact(events: EventStore, room_id: str) -> list[Event]:
    """Every stored event's prev events are stored; one forward extremity."""
    rows = await events.db.fetchall(
        "SELECT event_id FROM events WHERE room_id = ? ORDER BY stream_ordering", (room_id,)
    )
    stored = await events.get_events(r[0] for r in rows)
    for s in stored.values():
        missing = [p for p in s.event.prev_event_ids if p not in stored]
        assert not missing, f"{s.event.event_id} has unstored prev events {missing}"
    assert len(await events.get_forward_extremities(room_id)) == 1
    return [stored[r[0]].event for r in rows]


def bodies(events: list[Event]) -> list[str]:
    return [e.content["body"] for e in events if e.type == "m.room.message"]


async def test_sends_queue_on_each_other_and_commit_in_order(db: Database, key: ServerKey) -> None:
    rooms = await new_service(db, key)
    room_id = await rooms.create_room(RoomRequest(creator=OWNER, room_version=room_version("12")))
    gate = await hold_writer(db)
    sends = [
        asyncio.ensure_future(
            rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"})
        )
        for i in range(6)
    ]
    ids = await queued_then_released(db, gate, sends, 6)
    assert all(isinstance(i, str) for i in ids), ids
    stored = await assert_dag_intact(rooms.events, room_id)
    assert bodies(stored) == [f"m{i}" for i in range(6)]
    # Each was built on the one before it (a chain, not six forks of one head).
    messages = [e for e in stored if e.type == "m.room.message"]
    for before, after in itertools.pairwise(messages):
        assert after.prev_event_ids == [before.event_id]


async def test_a_failed_write_fails_its_send_and_the_ones_queued_on_it_are_rebuilt(
    db: Database, key: ServerKey, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rooms = await new_service(db, key)
    room_id = await rooms.create_room(RoomRequest(creator=OWNER, room_version=room_version("12")))
    real_persist: Callable[..., int] = service_module.persist_event

    def failing_persist(conn: sqlite3.Connection, event: Event, **kw: Any) -> int:
        if event.content.get("body") == "doomed":
            raise sqlite3.OperationalError("disk I/O error (injected by the test)")
        return real_persist(conn, event, **kw)

    monkeypatch.setattr(service_module, "persist_event", failing_persist)
    gate = await hold_writer(db)
    names = ["a", "doomed", "b", "c", "d"]
    sends = [
        asyncio.ensure_future(
            rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": n})
        )
        for n in names
    ]
    with caplog.at_level(logging.INFO, logger="node.rooms.service"):
        outcome = await queued_then_released(db, gate, sends, len(names))
    failed = outcome[1]
    assert isinstance(failed, MatrixError) and failed.status == 500
    assert failed.errcode == "M_UNKNOWN"
    assert all(isinstance(o, str) for i, o in enumerate(outcome) if i != 1), outcome
    stored = await assert_dag_intact(rooms.events, room_id)
    assert bodies(stored) == ["a", "b", "c", "d"]
    # The answers name the events that were stored (the rebuilt ones, not the first
    # builds that were never committed).
    ids = {e.event_id for e in stored}
    assert {outcome[i] for i in (0, 2, 3, 4)} <= ids
    assert "rebuilding" in caplog.text
    # The service goes on: the next send lands on the stored head.
    later = await rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": "e"})
    assert (await assert_dag_intact(rooms.events, room_id))[-1].event_id == later


async def test_a_transaction_id_from_before_a_restart_among_concurrent_sends(
    db: Database, key: ServerKey
) -> None:
    txn = TxnKey(OWNER, "DEV", "/_matrix/client/v3/rooms/r/send/m.room.message/T1")
    before = await new_service(db, key)
    room_id = await before.create_room(RoomRequest(creator=OWNER, room_version=room_version("12")))
    body = {"msgtype": "m.text", "body": "once"}
    first = await before.send(OWNER, room_id, "m.room.message", body, txn=txn)

    rooms = await new_service(db, key)  # "restarted": remembers no transaction IDs
    gate = await hold_writer(db)
    sends = [
        asyncio.ensure_future(
            rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
        ),
        asyncio.ensure_future(rooms.send(OWNER, room_id, "m.room.message", body, txn=txn)),
        asyncio.ensure_future(
            rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": "y"})
        ),
        asyncio.ensure_future(
            rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": "z"})
        ),
    ]
    outcome = await queued_then_released(db, gate, sends, len(sends))
    assert all(isinstance(o, str) for o in outcome), outcome
    assert outcome[1] == first
    stored = await assert_dag_intact(rooms.events, room_id)
    assert bodies(stored) == ["once", "x", "y", "z"]
    # And now it is remembered: a further retry answers at once, without a write.
    again = await rooms.send(OWNER, room_id, "m.room.message", body, txn=txn)
    assert again == first


async def test_same_transaction_id_twice_at_once_is_one_event(db: Database, key: ServerKey) -> None:
    rooms = await new_service(db, key)
    room_id = await rooms.create_room(RoomRequest(creator=OWNER, room_version=room_version("12")))
    txn = TxnKey(OWNER, "DEV", "/_matrix/client/v3/rooms/r/send/m.room.message/T2")
    body = {"msgtype": "m.text", "body": "twice"}
    gate = await hold_writer(db)
    sends = [
        asyncio.ensure_future(rooms.send(OWNER, room_id, "m.room.message", body, txn=txn))
        for _ in range(3)
    ]
    outcome = await queued_then_released(db, gate, sends, 1)
    assert len(set(outcome)) == 1 and isinstance(outcome[0], str), outcome
    assert bodies(await assert_dag_intact(rooms.events, room_id)) == ["twice"]


async def test_redacting_an_event_still_being_written(db: Database, key: ServerKey) -> None:
    """The redaction's target is found among the queued events, and the permission
    check applies to it (it is not treated as unknown)."""
    rooms = await new_service(db, key)
    room_id = await rooms.create_room(RoomRequest(creator=OWNER, room_version=room_version("12")))
    gate = await hold_writer(db)
    target = asyncio.ensure_future(
        rooms.send(OWNER, room_id, "m.room.message", {"msgtype": "m.text", "body": "oops"})
    )
    for _ in range(1000):
        if rooms._unpersisted:
            break
        await asyncio.sleep(0.001)
    (target_id,) = rooms._unpersisted
    redaction = asyncio.ensure_future(
        rooms.send(OWNER, room_id, "m.room.redaction", {}, redacts=target_id)
    )
    outcome = await queued_then_released(db, gate, [target, redaction], 2)
    assert outcome[0] == target_id and isinstance(outcome[1], str), outcome
    stored = await rooms.events.get_event(target_id)
    assert stored is not None
    assert "body" not in stored.event.content
    assert stored.event.raw["unsigned"]["redacted_because"]["event_id"] == outcome[1]
    pending = await db.fetchone("SELECT COUNT(*) FROM pending_redactions")
    assert pending is not None and pending[0] == 0
