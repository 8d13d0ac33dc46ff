"""SensorService: the configured sources, the durable queue and the publisher together.

Started by node/app.py once the node is up (``features.sensors`` on, or rows queued
by ``croft publish`` while it was stopped), stopped first on shutdown. One task per
source reads it every ``interval`` seconds (a slow read delays the next one; missed
ticks are skipped, not caught up) and stores the reading in the queue; one publisher
task sends the queue (node/sensors/publisher.py).

A failing source (the command fails, the file is missing, the plugin raises or
returns something that is not a reading) is logged, at most once a minute with the
count of repeats, and tried again at its interval; it never stops the node or the
other sources. Its recovery is logged once.

For tests and benchmarks: :meth:`queue_depth`, :meth:`stats`, :meth:`wait_idle`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from node.config import SensorsConfig, SensorSource
from node.events.pdu import MEMBER, Event, StateKey
from node.sensors.content import ReadingError, reading_content
from node.sensors.publisher import Publisher, Rooms
from node.sensors.queue import SensorQueue
from node.sensors.ratelimit import LogLimiter
from node.sensors.readers import ReadError, make_reader
from node.storage.database import Database

log = logging.getLogger(__name__)


@dataclass
class SourceStats:
    readings: int = 0  # stored in the queue
    failures: int = 0  # reads that failed
    last_error: str = ""


@dataclass
class SensorStats:
    sources: dict[str, SourceStats] = field(default_factory=dict)
    dropped_full: int = 0  # readings dropped because the queue was full


class SensorService:
    def __init__(
        self,
        db: Database,
        rooms: Rooms,
        resolve_alias: Callable[[str], Awaitable[str | None]],
        owner: str,
        settings: SensorsConfig,
        sources: tuple[SensorSource, ...] | None = None,
    ) -> None:
        self.settings = settings
        self.sources = settings.source if sources is None else sources
        self.owner = owner
        self.queue = SensorQueue(db, settings.queue_cap)
        self.publisher = Publisher(
            self.queue,
            rooms,
            resolve_alias,
            owner,
            settings.rate_per_room,
            settings.burst_per_room,
        )
        self._stats = SensorStats({s.id: SourceStats() for s in self.sources})
        self._logs = LogLimiter(log)
        self._tasks: list[asyncio.Task[None]] = []
        self._rooms = rooms

    @classmethod
    async def for_node(cls, node: Any) -> SensorService:
        """The service of a started node (node/app.py Node): its owner, rooms and
        directory; the sources only when features.sensors is on."""
        row = await node.db.fetchone(
            "SELECT user_id FROM accounts WHERE deactivated = 0 ORDER BY created_ts LIMIT 1"
        )
        if row is None:
            raise RuntimeError("sensors: this node has no owner account")
        cfg = node.config
        sources = cfg.sensors.source if cfg.features.sensors else ()
        return cls(node.db, node.rooms, node.directory.resolve_alias, row[0], cfg.sensors, sources)

    async def start(self) -> None:
        forgotten = await self.queue.forget_sent(self.owner)
        if forgotten:
            log.info("sensors: %d queued event(s) were sent before the restart", forgotten)
        depth = await self.queue.depth()
        on_persisted = getattr(self._rooms, "on_persisted", None)
        if on_persisted is not None:
            on_persisted.append(self._on_event)
        self._tasks.append(asyncio.create_task(self.publisher.run(), name="sensors-publisher"))
        for source in self.sources:
            task = asyncio.create_task(self._run_source(source), name=f"sensor-{source.id}")
            self._tasks.append(task)
        log.info(
            "sensors: %d source(s) (%s); %d event(s) queued; %g events/s per room, burst %d",
            len(self.sources),
            ", ".join(s.id for s in self.sources) or "none",
            depth,
            self.settings.rate_per_room,
            self.settings.burst_per_room,
        )

    async def stop(self) -> None:
        """Stop reading and publishing. A batch being sent is cut short; its rows stay
        queued, and their transaction IDs make a later send of them a no-op."""
        on_persisted = getattr(self._rooms, "on_persisted", None)
        if on_persisted is not None and self._on_event in on_persisted:
            on_persisted.remove(self._on_event)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # -- for tests and benchmarks ----------------------------------------------------------

    async def queue_depth(self) -> int:
        """Rows waiting in the queue (readings and `croft publish` events)."""
        return await self.queue.depth()

    def stats(self) -> dict[str, Any]:
        p = self.publisher.stats
        return {
            "sources": {k: vars(v).copy() for k, v in self._stats.sources.items()},
            "dropped_full": self._stats.dropped_full,
            "sent": p.sent,
            "dropped_bad": p.dropped_bad,
            "batches": p.batches,
            "blocked_rooms": dict(p.blocked_rooms),
        }

    async def wait_idle(self) -> None:
        """Until the publisher has sent everything it can send now."""
        await self.publisher.idle()

    # -- internals -------------------------------------------------------------------------

    async def _on_event(self, event: Event, state: Mapping[StateKey, Event]) -> None:
        if event.type == MEMBER and event.state_key == self.owner:
            self.publisher.unblock()

    async def _run_source(self, src: SensorSource) -> None:
        reader = make_reader(src)
        stats = self._stats.sources[src.id]
        key = f"source {src.id}"
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                reading = await reader.read()
                content = reading_content(src.id, reading, src.unit, int(time.time() * 1000))
            except (ReadError, ReadingError) as e:
                self._failed(src, stats, str(e))
            except Exception as e:  # a bug in a reader must not end the loop
                log.exception("sensors: source %s", src.id)
                self._failed(src, stats, f"{type(e).__name__}: {e}")
            else:
                self._logs.resolved(key, f"sensors: source {src.id} reads again")
                await self._store(src, stats, content)
            next_at += src.interval
            now = loop.time()
            if next_at < now:
                next_at = now
            await asyncio.sleep(next_at - now)

    async def _store(self, src: SensorSource, stats: SourceStats, content: dict[str, Any]) -> None:
        try:
            done = await self.queue.enqueue_reading(src.id, src.room, src.type, content)
        except Exception as e:  # the database: keep reading, it may recover
            self._logs.problem("store", f"sensors: cannot queue a reading: {e}")
            return
        self._logs.resolved("store", "sensors: queueing readings again")
        stats.readings += 1
        if done.dropped:
            self._stats.dropped_full += done.dropped
            self._logs.problem(
                "full",
                f"sensors: the queue is full ({self.queue.cap} rows): dropped the oldest "
                f"{done.dropped} reading(s) ({self._stats.dropped_full} since start)",
            )
        self.publisher.wake(src.room)

    def _failed(self, src: SensorSource, stats: SourceStats, error: str) -> None:
        stats.failures += 1
        stats.last_error = error
        self._logs.problem(
            f"source {src.id}",
            f"sensors: source {src.id} ({src.kind}) failed: {error}; "
            f"trying again every {src.interval:g} s",
        )
