"""The publisher: queued rows become room events, in batches, rate-limited per room.

One task loops over the rooms with queued rows, oldest first. For each room it
resolves the alias (once; the directory, node/directory/service.py), checks that the
owner is joined, takes up to ``min(tokens, BATCH)`` of the oldest rows and sends them
all at once through ``RoomService.send``. Those sends are pipelined: each is built
under the room lock on the one before and its write queued, and the database's group
commit stores the whole batch in one transaction (node/storage/database.py). Each send
carries the transaction ID of its row (queue.py), and the rows are removed once their
events are durable.

What happens to a row that cannot go yet:

* the room's alias does not resolve, the room is unknown, the owner is not joined, or
  the send is refused with 403: the rows stay queued, the room is retried after 1 s,
  then 2, 4 ... up to 60 s (at once when the owner's membership changes), and the
  reason is logged (at most once a minute per room);
* the event itself is bad (413 too large, 400 bad JSON): the row is dropped, logged;
* anything else (the database failing): kept, retried after a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from node.errors import MatrixError
from node.events.pdu import MEMBER
from node.sensors.queue import SENSOR_DEVICE, QueuedEvent, SensorQueue
from node.sensors.ratelimit import Clock, LogLimiter, TokenBucket
from node.storage.events import TxnKey

log = logging.getLogger(__name__)

# Most rows sent in one batch (one group commit holds up to 256 writes).
BATCH = 100
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
# After an unexpected failure (the database, ...).
RETRY_ERROR = 5.0


class Rooms(Protocol):
    """What the publisher needs of RoomService (node/rooms/service.py)."""

    async def send(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        txn: TxnKey | None = None,
    ) -> str: ...

    async def head(self, room_id: str) -> Any: ...


AliasResolver = Callable[[str], Awaitable[str | None]]


@dataclass
class _Blocked:
    until: float
    delay: float


@dataclass
class PublisherStats:
    sent: int = 0  # events made from queued rows since start
    dropped_bad: int = 0  # rows dropped because the event could never be sent
    batches: int = 0
    blocked_rooms: dict[str, str] = field(default_factory=dict)  # room -> why


class Publisher:
    def __init__(
        self,
        queue: SensorQueue,
        rooms: Rooms,
        resolve_alias: AliasResolver,
        owner: str,
        rate: float,
        burst: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self.queue = queue
        self.rooms = rooms
        self.resolve_alias = resolve_alias
        self.owner = owner
        self.rate, self.burst = rate, burst
        self.stats = PublisherStats()
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._room_ids: dict[str, str] = {}  # as configured -> room ID
        self._blocked: dict[str, _Blocked] = {}
        self._wake = asyncio.Event()
        self._logs = LogLimiter(log, clock=clock)
        self._idle = asyncio.Event()
        # Rooms that may have rows, each with a count of wake-ups (read from the queue
        # at the first pass, then kept up by wake(): no scan of the table per pass).
        self._pending: dict[str, int] | None = None

    def wake(self, room: str | None = None) -> None:
        """New rows are queued for ``room`` (None: a room may have become usable)."""
        if room is not None and self._pending is not None:
            self._pending[room] = self._pending.get(room, 0) + 1
        self._wake.set()

    def unblock(self) -> None:
        """Try the blocked rooms again now (the owner's membership changed)."""
        self._blocked.clear()
        self._wake.set()

    async def idle(self) -> None:
        """Wait until a pass finds nothing it can send now (tests, benchmarks)."""
        self._idle.clear()
        self.wake()
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                sent, delay = await self.publish_once()
            except Exception:
                log.exception("sensors: publishing failed; retrying in %g s", RETRY_ERROR)
                sent, delay = 0, RETRY_ERROR
            if sent:
                continue
            self._idle.set()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def publish_once(self) -> tuple[int, float | None]:
        """One pass over the rooms: (events sent, seconds until there may be more to
        send without a wake-up; None: nothing until woken)."""
        total, delay = 0, None
        if self._pending is None:
            self._pending = {room: 0 for room, _count in await self.queue.rooms()}
        for room in list(self._pending):
            sent, wait = await self._publish_room(room)
            total += sent
            if wait is not None:
                delay = wait if delay is None else min(delay, wait)
        return total, delay

    async def _publish_room(self, room: str) -> tuple[int, float | None]:
        now = self._clock()
        blocked = self._blocked.get(room)
        if blocked is not None and blocked.until > now:
            return 0, blocked.until - now
        room_id, why = await self._usable(room)
        if room_id is None:
            self._block(room, why)
            return 0, self._blocked[room].until - now
        bucket = self._buckets.get(room_id)
        if bucket is None:
            bucket = self._buckets[room_id] = TokenBucket(self.rate, self.burst, self._clock)
        n = min(bucket.available(), BATCH)
        if n < 1:
            return 0, bucket.wait_time(1)
        assert self._pending is not None
        woken = self._pending.get(room)
        rows = await self.queue.peek(room, n)
        if not rows:
            if self._pending.get(room) == woken:  # no row queued while we looked
                self._pending.pop(room, None)
            return 0, None
        bucket.take(len(rows))
        return await self._send_batch(room, room_id, rows)

    async def _send_batch(
        self, room: str, room_id: str, rows: list[QueuedEvent]
    ) -> tuple[int, float | None]:
        sends = [
            self.rooms.send(
                self.owner,
                room_id,
                row.event_type,
                row.content,
                txn=TxnKey(self.owner, SENSOR_DEVICE, row.txn_id),
            )
            for row in rows
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        done: list[int] = []
        refused: str | None = None
        failed: BaseException | None = None
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, str):
                done.append(row.id)
            elif isinstance(result, MatrixError) and result.status == 403:
                refused = refused or result.message
            elif isinstance(result, MatrixError) and 400 <= result.status < 500:
                log.error("sensors: dropped queued event %s for %s: %s", row.txn_id, room, result)
                self.stats.dropped_bad += 1
                done.append(row.id)
            elif isinstance(result, BaseException):
                failed = failed or result
        await self.queue.remove(done)
        sent = len(done)
        self.stats.sent += sent
        self.stats.batches += 1
        if refused is not None:
            self._block(room, f"the send was refused: {refused}")
            return sent, RETRY_FIRST
        if failed is not None:
            self._logs.problem(f"fail {room}", f"sensors: sending to {room} failed: {failed!r}")
            self._blocked[room] = _Blocked(self._clock() + RETRY_ERROR, RETRY_ERROR)
            return sent, RETRY_ERROR
        self._unblocked(room)
        return sent, None

    async def _usable(self, room: str) -> tuple[str | None, str]:
        """(room ID, "") when the owner may send to ``room`` now, else (None, why)."""
        room_id = self._room_ids.get(room)
        if room_id is None:
            if room.startswith("!"):
                room_id = room
            else:
                try:
                    room_id = await self.resolve_alias(room)
                except MatrixError as e:
                    return None, f"the alias does not resolve: {e.message}"
                if room_id is None:
                    return None, "no such alias on this server"
            self._room_ids[room] = room_id
        head = await self.rooms.head(room_id)
        if head is None:
            return None, f"room {room_id} is not known to this node"
        member = head.state.get((MEMBER, self.owner))
        if member is None or member.membership != "join":
            return None, f"{self.owner} is not joined to {room_id}"
        return room_id, ""

    def _block(self, room: str, why: str) -> None:
        old = self._blocked.get(room)
        delay = RETRY_FIRST if old is None else min(old.delay * 2, RETRY_MAX)
        self._blocked[room] = _Blocked(self._clock() + delay, delay)
        self.stats.blocked_rooms[room] = why
        self._logs.problem(f"room {room}", f"sensors: readings for {room} wait in the queue: {why}")

    def _unblocked(self, room: str) -> None:
        self._blocked.pop(room, None)
        self._logs.resolved(f"fail {room}", f"sensors: sending to {room} works again")
        if self.stats.blocked_rooms.pop(room, None) is not None:
            self._logs.resolved(f"room {room}", f"sensors: publishing to {room} again")
