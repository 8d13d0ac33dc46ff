"""The partial-history cache: a node keeps the history its device can hold and fetches
the rest from peers when a client asks for it.

Budgets (``[history]``, set by the device profile):

- ``max_timeline_events_per_room``: timeline events (node/history/store.py) cached per
  room. A sweep starts when a room holds more than the budget less a margin and takes
  its oldest events out until it holds the budget less twice the margin. The margin is
  10 % of the budget, or twice what arrived since the last sweep when more came (at
  most half the budget): sweeps run at most :data:`SWEEP_DEBOUNCE_S` apart while
  events come, so a room stays within its budget while the rate holds. Events still to
  be sent to a peer stay whatever the budget: they leave once delivered.
- ``max_store_bytes``: the database's pages in use plus the media files. Over 90 %,
  the oldest timeline events of any room leave until the store is under 80 %; when
  nothing more can leave, the oldest of what left is forgotten (its row and edges go:
  /messages then ends there, see store.forget_sync). Media uploads are refused at
  100 % (node/media/service.py).

Eviction runs in a background task, woken by new events and every
:data:`SWEEP_INTERVAL_S`, in writes of
:data:`~node.history.store.EVICT_BATCH` events with a yield to the event loop between
them, so sends and /sync never wait behind more than one batch. Databases made since
migration 0019 give freed pages back to the file system (auto_vacuum=INCREMENTAL).

Backfill on demand: when a backwards ``/messages`` page reaches events that left the
cache (node/client_api/sync.py), :meth:`HistoryCache.refetch` asks the servers in the
room for them (``GET /_matrix/federation/v1/backfill``, spec server-server-api.md
"Backfilling and retrieving missing events") and puts each one back at the stream
position it had. An event fetched again is the one that left: its event ID is the
reference hash of its redacted form (room versions 3 and up), checked here, and its
content hash is checked too (a mismatch stores the redacted form). Events fetched
again stay cached for :data:`FRESH_S` before the budget may take them again. When no
server has them, the room is not asked again for :data:`RETRY_AFTER_S` and the page
ends there: the client sees the end of the history available.

Retention (``history.retention``, off by default): a room's ``m.room.retention`` state
event (``max_lifetime``, milliseconds; MSC1763, as Synapse implements it) takes its
timeline events older than that out for good, every :data:`RETENTION_INTERVAL_S`;
they are never fetched again. `croft purge` does the same for one room by date.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from node.events.hashing import check_content_hash
from node.events.pdu import Event
from node.events.redaction import redact
from node.federation.common import FederationRequestError, path_segment
from node.federation.pdu_format import PduFormatError, parse_pdu
from node.history import store
from node.sync.tokens import StreamToken
from node.tasks import cancel_and_wait

if TYPE_CHECKING:
    from node.app import Node

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 30.0
# Seconds between exact counts of every room's timeline events (in between, a sweep
# adds what was stored since the last one).
RECOUNT_S = 600.0
SWEEP_DEBOUNCE_S = 0.25
RETENTION_INTERVAL_S = 300.0
FRESH_S = 60.0
RETRY_AFTER_S = 30.0
# Per refetch: events asked for, seeds named (``v``), servers tried, seconds per request.
REFETCH_LIMIT = 100
REFETCH_SEEDS = 5
REFETCH_SERVERS = 5
REFETCH_TIMEOUT_S = 20.0
# Seconds one fetch may take in all, over every server it asks (a client waits on it).
REFETCH_CALL_S = 20.0
RETENTION = "m.room.retention"
# Events out of the cache forgotten per write when the store is still over budget.
FORGET_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Budget:
    """When a sweep starts (``high``) and where it stops (``low``)."""

    high: int
    low: int

    @classmethod
    def of(cls, limit: int) -> Budget:
        slack = max(1, limit // 10)
        return cls(max(0, limit - slack), max(0, limit - 2 * slack))

    def adapted(self, arriving: int) -> Budget:
        """The budget for a room into which ``arriving`` events came since the last
        sweep: the margin below the limit grows to twice that, so that as many again
        fit before the next sweep (at most half the limit)."""
        limit = self.high + (self.high - self.low)
        margin = min(max(limit - self.high, 2 * arriving), max(1, limit // 2))
        if margin <= limit - self.high:
            return self
        return Budget(max(0, limit - margin), max(0, limit - 2 * margin))


@dataclass
class SweepReport:
    evicted: int = 0
    expired: int = 0
    rooms: int = 0
    used_bytes: int = 0


class HistoryCache:
    """Budgets, eviction, retention and fetching evicted history again (see the module)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.db = node.db
        config = node.config.history
        self.room_budget = Budget.of(config.max_timeline_events_per_room)
        self.store_budget = Budget.of(config.max_store_bytes)
        self.retention = config.retention
        self._fresh: dict[str, float] = {}  # event ID -> monotonic time it may go again
        self._quiet_until: dict[str, float] = {}  # room ID -> monotonic time
        self._swept_to: int | None = None  # stream position the last sweep looked at
        self._over: set[str] = set()  # rooms left over their budget by the last sweep
        self._counts: dict[str, int] = {}  # room ID -> timeline events cached (estimate)
        self._recount_at = 0.0
        self._next_retention = 0.0
        self._task: asyncio.Task[None] | None = None
        self._sweeping = asyncio.Lock()

    # -- the background task ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="history-cache")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        notifier = self.node.notifier
        seen: StreamToken = notifier.current_token()
        while True:
            started = time.monotonic()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("history: sweep failed; trying again in %.0f s", SWEEP_INTERVAL_S)
            if notifier.closed:
                return  # the node is stopping
            seen = await notifier.wait_for_change(seen, SWEEP_INTERVAL_S, background=True)
            # At most one sweep per SWEEP_DEBOUNCE_S, however fast events come.
            await asyncio.sleep(max(0.0, started + SWEEP_DEBOUNCE_S - time.monotonic()))
            seen = notifier.current_token()

    async def sweep(self, *, every_room: bool = False) -> SweepReport:
        """One pass: the rooms with new events (``every_room``: all rooms) against
        their budget, the store against its budget, retention when due. Returns what it
        did."""
        async with self._sweeping:
            report = SweepReport()
            position = await self.node.events.max_stream_ordering()
            now = time.monotonic()
            new: dict[str, int] = {}  # timeline events stored since the last sweep
            if self._swept_to is None or every_room or now >= self._recount_at:
                # Exact counts: at start, then now and then (backfilled events arrive
                # below the positions the increments below look at).
                rooms = [r[0] for r in await self.db.fetchall("SELECT room_id FROM rooms")]
                self._counts = await self.db.read_sync(
                    lambda conn: store.timeline_counts_sync(conn, rooms)
                )
                self._recount_at = now + RECOUNT_S
            else:
                swept = self._swept_to
                new = await self.db.read_sync(
                    lambda conn: store.new_timeline_events_sync(conn, swept)
                )
                for room_id, n in new.items():
                    self._counts[room_id] = self._counts.get(room_id, 0) + n
            budgets = {r: self.room_budget.adapted(n) for r, n in new.items()}
            over = [r for r, n in self._counts.items() if n > budgets.get(r, self.room_budget).high]
            rooms = list(dict.fromkeys([*self._over, *over]))
            counts = await self.db.read_sync(lambda conn: store.timeline_counts_sync(conn, rooms))
            self._over = set()
            for room_id, count in counts.items():
                self._counts[room_id] = count
                budget = budgets.get(room_id, self.room_budget)
                if count > budget.high:
                    report.rooms += 1
                    want = count - budget.low
                    moved = await self.evict_room(room_id, want, store.BUDGET)
                    report.evicted += moved
                    self._counts[room_id] = count - moved
                    if moved < want:  # events still to be sent, say: look again later
                        self._over.add(room_id)
            report.evicted += await self._keep_store_in_budget()
            if self.retention and time.monotonic() >= self._next_retention:
                report.expired += await self.apply_retention()
                self._next_retention = time.monotonic() + RETENTION_INTERVAL_S
            self._swept_to = position
            if report.evicted or report.expired:
                freed = await self.db.write_sync(lambda conn: store.vacuum_sync(conn, 1 << 20))
                log.info(
                    "history: %d events left the cache (%d rooms over budget), %d expired;"
                    " %d pages given back",
                    report.evicted,
                    report.rooms,
                    report.expired,
                    freed,
                )
            report.used_bytes = await self.store_bytes()
            now = time.monotonic()
            self._fresh = {i: t for i, t in self._fresh.items() if t > now}
            return report

    async def store_bytes(self) -> int:
        """What counts against ``max_store_bytes``: database pages in use and media."""
        used = await self.db.read_sync(store.used_bytes_sync)
        return used + self.node.media.stored_bytes()

    async def evict_room(
        self, room_id: str, count: int, reason: str, *, before_ts: int | None = None
    ) -> int:
        """Take up to ``count`` of the room's oldest timeline events out of the cache
        (those sent before ``before_ts`` only, when given), a batch per write."""
        done = 0
        after = -(2**63)
        while done < count:
            want = min(store.EVICT_BATCH, count - done)
            candidates = await self.db.read_sync(
                partial(
                    store.evictable_sync,
                    room_id=room_id,
                    limit=want + len(self._fresh),
                    after=after,
                    before_ts=before_ts,
                )
            )
            if not candidates:
                break
            now = time.monotonic()
            ids = [c.event_id for c in candidates if self._fresh.get(c.event_id, 0.0) <= now]
            ids = ids[:want]
            if not ids:
                after = candidates[-1].stream_ordering
                continue  # only events fetched again lately so far: look further
            moved = await self.db.write_sync(
                partial(store.evict_sync, event_ids=ids, reason=reason)
            )
            if moved == 0:
                break
            done += moved
            await asyncio.sleep(0)
        return done

    async def _keep_store_in_budget(self) -> int:
        used = await self.store_bytes()
        if used <= self.store_budget.high:
            return 0
        done = 0
        while used > self.store_budget.low:
            picked = await self.db.read_sync(
                lambda conn: store.oldest_evictable_sync(conn, store.EVICT_BATCH)
            )
            now = time.monotonic()
            ids = [c.event_id for _, c in picked if self._fresh.get(c.event_id, 0.0) <= now]
            moved = 0
            if ids:
                moved = await self.db.write_sync(
                    partial(store.evict_sync, event_ids=ids, reason=store.BUDGET)
                )
            if moved == 0:
                # Nothing more can leave the cache: forget the oldest of what left it.
                forgotten = await self.db.write_sync(partial(store.forget_sync, limit=FORGET_BATCH))
                if forgotten == 0:
                    break
                log.info("history: %d events out of the cache forgotten", forgotten)
            done += moved
            await self.db.write_sync(lambda conn: store.vacuum_sync(conn, 1 << 20))
            used = await self.store_bytes()
            await asyncio.sleep(0)
        if used > self.store_budget.high:
            log.warning(
                "history: the store holds %d bytes, over its budget of %d"
                " (history.max_store_bytes), and nothing more can leave the cache",
                used,
                self.node.config.history.max_store_bytes,
            )
        return done

    # -- retention and purges --------------------------------------------------------------

    async def apply_retention(self, now_ms: int | None = None) -> int:
        """Take out for good the timeline events older than their room's
        ``m.room.retention`` max_lifetime allows. Returns how many left the cache."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        done = 0
        for room_id, lifetime in await self.retention_policies():
            horizon = now_ms - lifetime
            done += await self.purge(room_id, horizon, store.RETENTION)
        return done

    async def retention_policies(self) -> list[tuple[str, int]]:
        """(room ID, max_lifetime ms) of the rooms whose current state sets one."""
        rows = await self.db.fetchall(
            "SELECT c.room_id, json_extract(e.json, '$.content.max_lifetime')"
            " FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = ? AND c.state_key = ''",
            (RETENTION,),
        )
        return [
            (r[0], int(r[1]))
            for r in rows
            if isinstance(r[1], int) and not isinstance(r[1], bool) and r[1] > 0
        ]

    async def retention_horizon(self, room_id: str) -> int:
        """With retention on, the time (ms) before which the room's events have
        expired by its policy; else 0."""
        if not self.retention:
            return 0
        lifetime = dict(await self.retention_policies()).get(room_id)
        return 0 if lifetime is None else int(time.time() * 1000) - lifetime

    async def purge(self, room_id: str, before_ts: int, reason: str = store.PURGE) -> int:
        """Take the room's timeline events sent before ``before_ts`` out for good."""
        moved = await self.evict_room(room_id, 2**62, reason, before_ts=before_ts)
        await self.db.write_sync(
            lambda conn: store.forget_evicted_sync(conn, room_id, reason, before_ts)
        )
        return moved

    # -- fetching evicted history again ------------------------------------------------------

    async def floor(self, room_id: str) -> int | None:
        """The position below which the room's history was forgotten (nothing there is
        fetched again: /messages ends at it), if any."""
        return await self.db.read_sync(partial(store.history_floor_sync, room_id=room_id))

    async def gap_top(self, room_id: str, upto: int) -> int | None:
        """The stream position of the newest event at or below ``upto`` that left the
        cache for its budget (and that retention allows), if any: a backwards page
        must stop above it until it is fetched again."""
        not_before = await self.retention_horizon(room_id)
        rows = await self.db.read_sync(
            lambda conn: store.refetchable_sync(
                conn, room_id, upto=upto, limit=1, not_before_ts=not_before
            )
        )
        return rows[0].stream_ordering if rows else None

    async def gap_above(self, room_id: str, after: int, need: int) -> tuple[int, int] | None:
        """For a forwards page from ``after``: the positions of the oldest and of the
        ``need``-th oldest event after it that left the cache for its budget (fetching
        again up to the latter, newest first, brings back the ``need`` the page meets
        first), if any."""
        not_before = await self.retention_horizon(room_id)
        found = await self.db.read_sync(
            lambda conn: store.refetchable_above_sync(
                conn,
                room_id,
                after=after,
                limit=max(1, min(need, REFETCH_LIMIT)),
                not_before_ts=not_before,
            )
        )
        return (found[0], found[-1]) if found else None

    async def refetch(self, room_id: str, upto: int, need: int) -> int:
        """Fetch again up to ``need`` events of the room that left the cache, the
        newest at or below stream position ``upto`` first, from the servers in the
        room. Returns how many went back into the cache."""
        if time.monotonic() < self._quiet_until.get(room_id, 0.0):
            return 0
        not_before = await self.retention_horizon(room_id)
        need = max(1, min(need, REFETCH_LIMIT))
        wanted = await self.db.read_sync(
            lambda conn: store.refetchable_sync(
                conn, room_id, upto=upto, limit=need, not_before_ts=not_before
            )
        )
        version = await self.node.events.get_room_version(room_id)
        if not wanted or version is None:
            return 0
        seeds = [w.event_id for w in wanted[:REFETCH_SEEDS]]
        servers = await self.node.backfiller.servers_to_ask(room_id, version)
        started = time.monotonic()
        path = f"/_matrix/federation/v1/backfill/{path_segment(room_id)}"
        query = {"v": seeds, "limit": str(need)}
        async for server, pdus in self._ask(servers, path, room_id, query):
            restored = await self._restore(room_id, version, pdus)
            if restored:
                self._quiet_until.pop(room_id, None)
                left = await self.db.fetchone(
                    "SELECT COUNT(*) FROM evicted_events WHERE room_id = ? AND reason = ?",
                    (room_id, store.BUDGET),
                )
                log.info(
                    "history: %d events of %s fetched again from %s in %.2f s"
                    " (%d still out of the cache)",
                    restored,
                    room_id,
                    server,
                    time.monotonic() - started,
                    int(left[0]) if left else 0,
                )
                return restored
            log.info("history: %s had none of the events of %s asked for", server, room_id)
        self._quiet_until[room_id] = time.monotonic() + RETRY_AFTER_S
        log.info(
            "history: older events of %s are not available (asked %d servers);"
            " not asking again for %.0f s",
            room_id,
            min(len(servers), REFETCH_SERVERS),
            RETRY_AFTER_S,
        )
        return 0

    async def fetch_again(self, room_id: str, event_id: str) -> bool:
        """Fetch one event of the room that left the cache for its budget again, for
        ``/event`` and ``/context`` (``GET /_matrix/federation/v1/event/{eventId}`` from
        the servers in the room). False when it did not leave the cache, or nobody has
        it now."""
        rows = await self.db.read_sync(partial(store.evicted_sync, event_ids=[event_id]))
        row = rows.get(event_id)
        if row is None or row.reason != store.BUDGET or row.room_id != room_id:
            return False
        if row.origin_server_ts < await self.retention_horizon(room_id):
            return False
        if time.monotonic() < self._quiet_until.get(room_id, 0.0):
            return False
        version = await self.node.events.get_room_version(room_id)
        if version is None:
            return False
        servers = await self.node.backfiller.servers_to_ask(room_id, version)
        path = f"/_matrix/federation/v1/event/{path_segment(event_id)}"
        async for server, pdus in self._ask(servers, path, event_id):
            if await self._restore(room_id, version, pdus):
                log.info("history: %s fetched again from %s", event_id, server)
                return True
        self._quiet_until[room_id] = time.monotonic() + RETRY_AFTER_S
        return False

    async def _ask(
        self, servers: Sequence[str], path: str, what: str, query: Any = None
    ) -> AsyncIterator[tuple[str, list[Any]]]:
        """GET ``path`` from the first REFETCH_SERVERS of ``servers`` in turn, within
        REFETCH_CALL_S in all; yields each server that answered with a ``pdus`` list,
        and that list (the caller stops when it has what it wanted)."""
        started = time.monotonic()
        for server in servers[:REFETCH_SERVERS]:
            left = started + REFETCH_CALL_S - time.monotonic()
            if left <= 0:
                return
            try:
                body = await self.node.federation_client.get_json(
                    server, path, query=query, timeout=min(REFETCH_TIMEOUT_S, left)
                )
            except FederationRequestError as e:
                log.info("history: fetching %s from %s failed: %s", what, server, e)
                continue
            pdus = body.get("pdus") if isinstance(body, dict) else None
            if not isinstance(pdus, list):
                log.info("history: %s answered %s without a pdus list", server, path)
                continue
            yield server, pdus

    async def _restore(self, room_id: str, version: Any, raws: Sequence[Any]) -> int:
        """Put back the events among ``raws`` that are evicted events of the room."""
        parsed: dict[str, Event] = {}
        for raw in raws:
            try:
                event = parse_pdu(raw, version)  # computes the event ID from the event
            except PduFormatError as e:
                log.info("history: a fetched event is not valid: %s", e)
                continue
            if event.room_id == room_id and event.state_key is None:
                parsed.setdefault(event.event_id, event)
        evicted = await self.db.read_sync(lambda conn: store.evicted_sync(conn, list(parsed)))
        ready: list[tuple[Event, store.Evicted, str | None]] = []
        for event_id, row in evicted.items():
            if row.reason != store.BUDGET or row.room_id != room_id:
                continue
            event = parsed[event_id]
            if not check_content_hash(event.raw):
                event = Event(event.event_id, version, redact(event.raw, version))
            pending = None
            if row.redacted_by is None:  # a redaction that came while it was out
                pending = await self.node.pdu_receiver.pending_redaction(event)
            ready.append((event, row, pending))
        if not ready:
            return 0

        def write(conn: Any) -> int:
            return sum(store.restore_sync(conn, e, r, p) for e, r, p in ready)

        restored = int(await self.db.write_sync(write))
        self._counts[room_id] = self._counts.get(room_id, 0) + restored
        until = time.monotonic() + FRESH_S
        for event, _, _ in ready:
            self._fresh[event.event_id] = until
        return restored
