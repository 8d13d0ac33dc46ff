"""The queue (a real SQLite file) and the publisher's batching, rate limit and retries
(against a fake RoomService and a fake clock: pure logic)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from node.errors import MatrixError, bad_json, forbidden
from node.events.pdu import MEMBER
from node.sensors.publisher import BATCH, RETRY_FIRST, Publisher
from node.sensors.queue import SENSOR_DEVICE, SensorQueue
from node.storage.database import Database
from node.storage.events import TxnKey

OWNER = "@alice:pi.local"
ROOM_A = "!a:pi.local"
ROOM_B = "!b:pi.local"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Member:
    membership: str


@dataclass
class Head:
    state: dict[tuple[str, str], Member]


@dataclass
class FakeRooms:
    """RoomService as the publisher sees it: sends recorded, membership per room."""

    joined: set[str] = field(default_factory=set)
    sent: list[tuple[str, str, dict[str, Any], str]] = field(default_factory=list)
    fail: dict[int, MatrixError] = field(default_factory=dict)  # by content["n"]

    async def send(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        txn: TxnKey | None = None,
    ) -> str:
        assert sender == OWNER and txn is not None and txn.device_id == SENSOR_DEVICE
        error = self.fail.get(int(content.get("n", -1)))
        if error is not None:
            raise error
        self.sent.append((room_id, event_type, dict(content), txn.txn_id))
        return f"$event{len(self.sent)}"

    async def head(self, room_id: str) -> Head | None:
        if room_id not in self.joined:
            return Head({(MEMBER, OWNER): Member("leave")})
        return Head({(MEMBER, OWNER): Member("join")})


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "croft.db")
    yield database
    await database.close()


async def no_aliases(alias: str) -> str | None:
    return {"#a:pi.local": ROOM_A}.get(alias)


def publisher(
    db: Database, rooms: FakeRooms, clock: Clock, rate: float = 10, burst: int = 100
) -> Publisher:
    return Publisher(SensorQueue(db, 1000), rooms, no_aliases, OWNER, rate, burst, clock=clock)


async def fill(queue: SensorQueue, room: str, n: int, source: str = "s") -> None:
    for i in range(n):
        await queue.enqueue_reading(source, room, "io.croft.sensor.reading", {"n": i})


async def test_enqueue_numbers_readings_per_source_and_keeps_order(db: Database) -> None:
    queue = SensorQueue(db, 100)
    await fill(queue, ROOM_A, 3, "x")
    await fill(queue, ROOM_A, 2, "y")
    await queue.enqueue_event(ROOM_B, "m.room.message", {"body": "hi", "msgtype": "m.text"})
    rows = await queue.peek(ROOM_A, 10)
    assert [(r.source_id, r.content["seq"], r.content["n"]) for r in rows] == [
        ("x", 1, 0),
        ("x", 2, 1),
        ("x", 3, 2),
        ("y", 1, 0),
        ("y", 2, 1),
    ]
    assert [r.txn_id for r in rows] == [f"sensorq-{r.id}" for r in rows]
    assert await queue.depth() == 6
    assert await queue.rooms() == [(ROOM_A, 5), (ROOM_B, 1)]
    (published,) = await queue.peek(ROOM_B, 10)
    assert published.source_id is None and "seq" not in published.content
    assert await queue.remove([rows[0].id, rows[1].id, 999999]) == 2
    assert await queue.depth() == 4


async def test_a_full_queue_drops_the_oldest_readings_never_published_events(
    db: Database,
) -> None:
    queue = SensorQueue(db, 5)
    await queue.enqueue_event(ROOM_B, "m.room.message", {"body": "keep me"})
    dropped = []
    for i in range(8):
        done = await queue.enqueue_reading("s", ROOM_A, "io.croft.sensor.reading", {"n": i})
        dropped.append(done.dropped)
    assert dropped == [0, 0, 0, 0, 1, 1, 1, 1]
    assert await queue.depth() == 5
    assert [r.content["seq"] for r in await queue.peek(ROOM_A, 10)] == [5, 6, 7, 8]
    assert len(await queue.peek(ROOM_B, 10)) == 1
    # The seq numbers go on after a restart of the numbering's owner (they are stored).
    done = await queue.enqueue_reading("s", ROOM_A, "io.croft.sensor.reading", {})
    assert done.seq == 9


async def test_the_depth_counter_matches_the_table(db: Database) -> None:
    queue = SensorQueue(db, 3)
    await fill(queue, ROOM_A, 7)
    await queue.remove([r.id for r in await queue.peek(ROOM_A, 2)])
    (count,) = await db.fetchone("SELECT COUNT(*) FROM sensor_queue")
    assert await queue.depth() == count == 1


async def test_batches_in_order_within_the_rate(db: Database) -> None:
    clock, rooms = Clock(), FakeRooms(joined={ROOM_A})
    pub = publisher(db, rooms, clock, rate=10, burst=30)
    await fill(pub.queue, ROOM_A, 75)
    sent, delay = await pub.publish_once()
    assert sent == 30  # the burst
    assert delay is None  # the room's pass went fine; the loop passes again at once
    sent, delay = await pub.publish_once()
    assert sent == 0 and delay == pytest.approx(0.1)  # 10/s: the next token in 0.1 s
    clock.now += 2.0
    sent, _ = await pub.publish_once()
    assert sent == 20
    clock.now += 100.0
    assert (await pub.publish_once())[0] == 25
    assert [c["n"] for _, _, c, _ in rooms.sent] == list(range(75))
    assert [c["seq"] for _, _, c, _ in rooms.sent] == list(range(1, 76))
    assert await pub.queue.depth() == 0
    assert pub.stats.sent == 75 and pub.stats.batches == 3


async def test_a_batch_is_at_most_BATCH_events(db: Database) -> None:
    clock, rooms = Clock(), FakeRooms(joined={ROOM_A})
    pub = publisher(db, rooms, clock, rate=1e6, burst=10_000)
    await fill(pub.queue, ROOM_A, BATCH + 20)
    assert (await pub.publish_once())[0] == BATCH
    assert (await pub.publish_once())[0] == 20


async def test_a_room_not_joined_waits_without_holding_up_others(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "node.sensors")
    clock, rooms = Clock(), FakeRooms(joined={ROOM_B})
    pub = publisher(db, rooms, clock)
    await fill(pub.queue, "#a:pi.local", 3)
    await fill(pub.queue, "#nobody:pi.local", 2)
    await fill(pub.queue, ROOM_B, 4)
    sent, delay = await pub.publish_once()
    assert sent == 4 and delay == pytest.approx(RETRY_FIRST)
    assert await pub.queue.depth() == 5
    why = pub.stats.blocked_rooms
    assert why["#a:pi.local"] == f"{OWNER} is not joined to {ROOM_A}"
    assert why["#nobody:pi.local"] == "no such alias on this server"
    assert "readings for #a:pi.local wait in the queue" in caplog.text
    # Retried later with a growing delay, logged again only after a minute.
    caplog.clear()
    clock.now += RETRY_FIRST
    sent, delay = await pub.publish_once()
    assert sent == 0 and delay == pytest.approx(2 * RETRY_FIRST)
    assert "wait in the queue" not in caplog.text
    rooms.joined.add(ROOM_A)
    pub.unblock()  # the owner's membership changed (SensorService hooks on_persisted)
    sent, _ = await pub.publish_once()
    assert sent == 3
    assert [(r, c["n"]) for r, _, c, _ in rooms.sent[4:]] == [(ROOM_A, 0), (ROOM_A, 1), (ROOM_A, 2)]
    assert "publishing to #a:pi.local again" in caplog.text


async def test_refused_kept_bad_dropped(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rooms = FakeRooms(joined={ROOM_A}, fail={1: bad_json("no"), 3: forbidden("power levels")})
    pub = publisher(db, rooms, clock)
    await fill(pub.queue, ROOM_A, 5)
    sent, _ = await pub.publish_once()
    # 0, 2 and 4 sent; 1 can never be sent (dropped, logged); 3 was refused: kept.
    assert [c["n"] for _, _, c, _ in rooms.sent] == [0, 2, 4]
    assert sent == 4 and pub.stats.dropped_bad == 1
    assert [r.content["n"] for r in await pub.queue.peek(ROOM_A, 10)] == [3]
    assert "dropped queued event" in caplog.text
    assert pub.stats.blocked_rooms[ROOM_A] == "the send was refused: power levels"
    del rooms.fail[3]
    clock.now += RETRY_FIRST
    assert (await pub.publish_once())[0] == 1
    assert await pub.queue.depth() == 0


async def test_rows_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "croft.db"
    db = await Database.open(path)
    await fill(SensorQueue(db, 10), ROOM_A, 3)
    await db.close()
    raw = sqlite3.connect(path)
    rows = raw.execute("SELECT content FROM sensor_queue ORDER BY id").fetchall()
    raw.close()
    assert [json.loads(c)["seq"] for (c,) in rows] == [1, 2, 3]


async def test_rows_queued_after_a_room_drained_are_found_by_wake(db: Database) -> None:
    clock, rooms = Clock(), FakeRooms(joined={ROOM_A, ROOM_B})
    pub = publisher(db, rooms, clock)
    await fill(pub.queue, ROOM_A, 2)
    assert (await pub.publish_once())[0] == 2
    assert (await pub.publish_once())[0] == 0  # drained: the room leaves the pending set
    await fill(pub.queue, ROOM_B, 3)
    assert (await pub.publish_once())[0] == 0  # not woken: not looked for
    pub.wake(ROOM_B)
    assert (await pub.publish_once())[0] == 3
    assert [r for r, _, _, _ in rooms.sent] == [ROOM_A] * 2 + [ROOM_B] * 3
