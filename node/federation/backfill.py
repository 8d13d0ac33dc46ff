"""Backfilling: fetching the history of a room from before this server joined it, for
``/messages``.

Spec: content/server-server-api.md "Backfilling and retrieving missing events"
(api/server-server/backfill.yaml: ``GET /backfill/{roomId}?v=...&limit=``), "Retrieving
events" (``/state_ids``, ``/state``: the state at the oldest fetched events) and "Checks
performed on receipt of a PDU" (checks 1 to 5; soft failure, 6, judges an event
against the room's current state and does not apply to its past).

A room's *backward extremities* are the events that the room's DAG events here name
as ``prev_events`` but that are not placed in the DAG here (unknown, or known only as
outliers: the state a join brought, say). After a join they are the join's prev
events. :meth:`Backfiller.backfill` asks a server in the room (the creator's first,
then the other joined servers; never this one; the next on failure) for the events
before them, checks each one (1 to 3: dropped when invalid or badly signed; 4 and 5:
stored as rejected) and places it in the DAG, oldest first, with its state groups:
the state before it is the resolution of the states after its prev events, or, when a
prev event is not placed here (the oldest events of a batch), the state before it as
the server says (``/state_ids``, and ``/state`` when some of those events are not
known here; stored as outliers).

Backfilled events are *historical*: stored at stream orderings below every stored
event (negative numbers), newer ones (greater depth, then the DAG order) higher, so
``/messages`` going backwards reaches them right after what it had, while ``/sync``,
which reads forward from its token, never shows them. They move no forward extremity
and no current state, and nothing is notified or pushed. The orderings are a total
order over the whole events table: one backfill runs at a time on a node.

Bounds: at most :data:`MAX_PER_REQUEST` events per request, :data:`MAX_EXTREMITIES`
extremities named, :data:`MAX_SERVERS` servers tried (none started after
:data:`CALL_SECONDS`) and :data:`MAX_STATE_FETCHES` remote states fetched per call,
each request with a timeout; a room whose servers gave nothing is not asked again for
``retry_after`` seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.events.pdu import CREATE, Event
from node.events.room_versions import RoomVersion
from node.federation.common import FederationRequestError, path_segment
from node.federation.pdus import PduDropped
from node.rooms.auth import auth_types_for_event
from node.rooms.state_res import StateResolutionError, resolve_state
from node.storage.events import persist_event
from node.storage.state import StateIds, set_event_groups, write_group

log = logging.getLogger(__name__)

# Events asked for (and accepted) per /backfill request: the most room_reads serves.
MAX_PER_REQUEST = 100
# Backward extremities named in one request (``v`` parameters).
MAX_EXTREMITIES = 20
# Servers tried per call before giving up.
MAX_SERVERS = 5
# Remote states (/state_ids, /state) fetched per call: one per oldest event of a batch.
MAX_STATE_FETCHES = 10
# State events accepted in a remote state.
MAX_STATE_EVENTS = 20_000
# Seconds before a room whose servers had nothing to give is asked again.
RETRY_AFTER = 30.0
# Seconds per /backfill request, per /state_ids or /state request, and after which
# a call tries no further server.
REQUEST_TIMEOUT = 30.0
STATE_TIMEOUT = 60.0
CALL_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class _Placed:
    """An event placed in the DAG by this call: its state-after group and state."""

    group: int
    state: StateIds


class _StoreSource:
    """State resolution's EventSource over the store (rejected events left out)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        stored = await self.node.events.get_events(event_ids)
        return {i: s.event for i, s in stored.items() if s.event.rejected_reason is None}


class Backfiller:
    """Fetches and stores the history of rooms from other servers (see the module)."""

    def __init__(self, node: Any, *, retry_after: float = RETRY_AFTER) -> None:
        self.node = node
        self.server_name: str = node.config.server_name
        self.retry_after = retry_after
        self._lock = asyncio.Lock()  # one backfill at a time: orderings are allocated below
        self._quiet_until: dict[str, float] = {}  # room ID -> monotonic time

    # -- reads ---------------------------------------------------------------------------

    async def backward_extremities(self, room_id: str, limit: int = MAX_EXTREMITIES) -> list[str]:
        """Prev events of the room's DAG events that are not placed in the DAG here,
        those named by the deepest events first."""
        rows = await self.node.db.fetchall(
            "SELECT x.prev_event_id, MAX(e.depth) AS d FROM events e"
            " JOIN event_state_groups g ON g.event_id = e.event_id"
            " JOIN event_edges x ON x.event_id = e.event_id"
            " WHERE e.room_id = ? AND e.outlier = 0 AND e.rejected_reason IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM event_state_groups p"
            "   WHERE p.event_id = x.prev_event_id)"
            " AND NOT EXISTS (SELECT 1 FROM evicted_events v"
            "   WHERE v.event_id = x.prev_event_id)"
            " GROUP BY x.prev_event_id ORDER BY d DESC, x.prev_event_id LIMIT ?",
            (room_id, limit),
        )
        return [r[0] for r in rows]

    # -- backfilling -----------------------------------------------------------------------

    async def backfill(self, room_id: str, limit: int) -> int:
        """Fetch up to ``limit`` (at most :data:`MAX_PER_REQUEST`) events of the room's
        history before its backward extremities and store them. Returns how many events
        were placed in the DAG (rejected ones included); 0 when there is nothing to
        fetch or no server had anything (then the room rests ``retry_after`` seconds)."""
        limit = max(1, min(limit, MAX_PER_REQUEST))
        if time.monotonic() < self._quiet_until.get(room_id, 0.0):
            return 0
        async with self._lock:
            extremities = await self.backward_extremities(room_id)
            version = await self.node.events.get_room_version(room_id)
            if not extremities or version is None:
                return 0
            servers = await self.servers_to_ask(room_id, version)
            give_up = time.monotonic() + CALL_SECONDS
            for server in servers[:MAX_SERVERS]:
                if time.monotonic() > give_up:
                    break
                try:
                    raws = await self._request(server, room_id, extremities, limit)
                except FederationRequestError as e:
                    log.info("backfill of %s from %s failed: %s", room_id, server, e)
                    continue
                added = await self._place(server, room_id, version, raws[:limit])
                if added:
                    self._quiet_until.pop(room_id, None)
                    left = len(await self.backward_extremities(room_id))
                    log.info(
                        "backfilled %d events of %s from %s (%d backward extremities left)",
                        added,
                        room_id,
                        server,
                        left,
                    )
                    return added
                log.info("backfill of %s: %s had no new events", room_id, server)
            self._quiet_until[room_id] = time.monotonic() + self.retry_after
            log.info(
                "backfill of %s: no server had more history (asked %d); not retrying for %.0f s",
                room_id,
                min(len(servers), MAX_SERVERS),
                self.retry_after,
            )
            return 0

    async def servers_to_ask(self, room_id: str, version: RoomVersion) -> list[str]:
        """The servers to ask: the room creator's, then the other joined servers."""
        creator: str | None = None
        create_id = (await self.node.events.get_current_state_ids(room_id)).get((CREATE, ""))
        if create_id is None and version.room_id_is_create_event_id:
            create_id = "$" + room_id[1:]
        create = await self.node.events.get_event(create_id) if create_id else None
        if create is not None and ":" in create.event.sender:
            creator = create.event.sender.split(":", 1)[1]
        joined = sorted(await self.node.events.get_joined_servers(room_id))
        ordered = ([creator] if creator else []) + joined
        return [s for s in dict.fromkeys(ordered) if s != self.server_name]

    async def _request(
        self, server: str, room_id: str, extremities: Sequence[str], limit: int
    ) -> list[Any]:
        body = await self.node.federation_client.get_json(
            server,
            f"/_matrix/federation/v1/backfill/{path_segment(room_id)}",
            query={"v": list(extremities), "limit": str(limit)},
            timeout=REQUEST_TIMEOUT,
        )
        pdus = body.get("pdus") if isinstance(body, dict) else None
        if not isinstance(pdus, list):
            raise _BadAnswer(f"{server}: /backfill answered without a pdus list")
        return pdus

    async def _place(
        self, server: str, room_id: str, version: RoomVersion, raws: Sequence[Any]
    ) -> int:
        """Check the fetched events and place the new ones in the DAG, oldest first."""
        receiver = self.node.pdu_receiver
        checked: dict[str, Event] = {}
        for raw in raws:
            try:
                event = await receiver.check_event(raw, version)  # 1. to 3.
            except PduDropped as e:
                log.info("backfilled event from %s dropped: %s", server, e)
                continue
            if event.room_id != room_id:
                log.info(
                    "backfilled event %s from %s is not in %s", event.event_id, server, room_id
                )
                continue
            checked.setdefault(event.event_id, event)
        rooms = self.node.rooms
        async with rooms.lock(room_id):
            await rooms.drain(room_id)
            already = await self.node.states.event_groups(checked)
            order = dag_order([e for i, e in checked.items() if i not in already])
            if not order:
                return 0
            first = await self._lowest_ordering() - len(order)
            placed: dict[str, _Placed] = {}
            fetches = _Counter(MAX_STATE_FETCHES)
            for index, event in enumerate(order):
                try:
                    known = await self._state_before(server, event, placed, fetches)
                except (PduDropped, FederationRequestError, _BadAnswer) as e:
                    log.info("backfilled event %s left out: %s", event.event_id, e)
                    continue
                before, base = known
                relevant = auth_types_for_event(version, event.raw) | {(CREATE, "")}
                auth_state = {k: v for k, v in before.items() if k in relevant}
                try:
                    event = await receiver.check_historical(server, event, auth_state)  # 4., 5.
                except PduDropped as e:
                    log.info("backfilled event %s left out: %s", event.event_id, e)
                    continue
                stored = await self._store(event, before, base, first + index)
                if stored is not None:
                    placed[event.event_id] = stored
            return len(placed)

    async def _lowest_ordering(self) -> int:
        """The position every new historical event must be below: the lowest stored
        stream ordering, and never above 0 (positions start at 1; 0 is "before all")."""
        row = await self.node.db.fetchone("SELECT MIN(stream_ordering) FROM events")
        lowest = int(row[0]) if row and row[0] is not None else 0
        return min(lowest, 0)

    # -- the state before an event -------------------------------------------------------

    async def _state_before(
        self, server: str, event: Event, placed: Mapping[str, _Placed], fetches: _Counter
    ) -> tuple[StateIds, tuple[int, StateIds] | None]:
        """The state before ``event`` and a group to store it as a delta over (the
        state after one of its prev events), or the server's state before it."""
        prevs = list(dict.fromkeys(event.prev_event_ids))
        others = await self.node.events.get_events(p for p in prevs if p not in placed)
        if any(s.event.room_id != event.room_id for s in others.values()):
            raise _BadAnswer("a prev event is in another room")
        stored = await self.node.states.event_groups(p for p in prevs if p not in placed)
        if any(p not in placed and p not in stored for p in prevs):
            fetches.take()
            return await self._remote_state(server, event), None
        afters: dict[int, StateIds] = {}
        for p in prevs:
            if p in placed:
                afters.setdefault(placed[p].group, placed[p].state)
            elif stored[p].after not in afters:
                afters[stored[p].after] = await self.node.states.state_ids(stored[p].after)
        if not afters:
            return {}, None  # the create event
        base = next(iter(afters.items()))
        if len(afters) == 1:
            return dict(base[1]), base
        try:
            resolved = await resolve_state(
                event.room_version, list(afters.values()), _StoreSource(self.node)
            )
        except StateResolutionError as e:
            raise _BadAnswer(f"cannot resolve the state before it: {e}") from None
        return resolved, base

    async def _remote_state(self, server: str, event: Event) -> StateIds:
        """The state before ``event`` as ``server`` has it: ``/state_ids``, then
        ``/state`` if some of those events are unknown here (stored as outliers)."""
        client = self.node.federation_client
        room = path_segment(event.room_id)
        query = {"event_id": event.event_id}
        body = await client.get_json(
            server, f"/_matrix/federation/v1/state_ids/{room}", query=query, timeout=STATE_TIMEOUT
        )
        ids = body.get("pdu_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _BadAnswer(f"{server}: bad /state_ids answer")
        if len(ids) > MAX_STATE_EVENTS:
            raise _BadAnswer(f"{server}: {len(ids)} state events, more than accepted")
        found = await self.node.events.get_events(ids)
        if any(i not in found for i in ids):
            full = await client.get_json(
                server, f"/_matrix/federation/v1/state/{room}", query=query, timeout=STATE_TIMEOUT
            )
            pdus = full.get("pdus") if isinstance(full, dict) else None
            chain = full.get("auth_chain") if isinstance(full, dict) else None
            if not isinstance(pdus, list) or not isinstance(chain, list):
                raise _BadAnswer(f"{server}: bad /state answer")
            if len(pdus) + len(chain) > 2 * MAX_STATE_EVENTS:
                raise _BadAnswer(f"{server}: /state is larger than accepted")
            await self.node.pdu_receiver.store_outliers(server, [*chain, *pdus], event.room_version)
            found = await self.node.events.get_events(ids)
        state: StateIds = {}
        for i in ids:
            s = found.get(i)
            if (
                s is not None
                and s.event.is_state
                and s.event.rejected_reason is None
                and s.event.room_id == event.room_id
            ):
                state[s.event.key] = i
        return state

    # -- storing ----------------------------------------------------------------------------

    async def _store(
        self, event: Event, before: StateIds, base: tuple[int, StateIds] | None, ordering: int
    ) -> _Placed | None:
        """Place a checked event in the DAG at ``ordering`` with its state groups; None
        when it was placed meanwhile. A row stored for it before (an outlier, or an
        invite stored without state) is replaced."""
        states = self.node.states
        room_id = event.room_id
        base_group, base_state = base if base is not None else (None, None)
        before_group, g1 = states.plan(room_id, base_group, base_state, before)
        after = dict(before)
        if event.rejected_reason is None and event.is_state:
            after[event.key] = event.event_id
        after_group, g2 = states.plan(room_id, before_group, before, after)
        groups = [g for g in (g1, g2) if g is not None]

        def write(conn: sqlite3.Connection) -> bool:
            placed = conn.execute(
                "SELECT 1 FROM event_state_groups WHERE event_id = ?", (event.event_id,)
            ).fetchone()
            if placed is not None:
                return False
            conn.execute("DELETE FROM events WHERE event_id = ?", (event.event_id,))
            persist_event(conn, event, update_current_state=False, stream_ordering=ordering)
            for g in groups:
                write_group(conn, g)
            set_event_groups(conn, event.event_id, before_group, after_group)
            return True

        if not await self.node.db.write_sync(write):
            return None
        return _Placed(after_group, after)


class _BadAnswer(FederationRequestError):
    """A server answered something unusable."""


class _Counter:
    def __init__(self, left: int) -> None:
        self.left = left

    def take(self) -> None:
        if self.left <= 0:
            raise _BadAnswer("too many remote states to fetch in one backfill")
        self.left -= 1


def dag_order(events: Sequence[Event]) -> list[Event]:
    """``events`` oldest first: each after its prev events among them (Kahn's sort),
    ties (and cycles, which only forged events make) by depth, timestamp and ID."""
    by_id = {e.event_id: e for e in events}
    waiting = {e.event_id: {p for p in e.prev_event_ids if p in by_id} for e in events}
    children: dict[str, list[str]] = {}
    for e in events:
        for p in waiting[e.event_id]:
            children.setdefault(p, []).append(e.event_id)
    ready = [_key(e) for e in events if not waiting[e.event_id]]
    heapq.heapify(ready)
    out: list[Event] = []
    while ready:
        *_, event_id = heapq.heappop(ready)
        out.append(by_id[event_id])
        for c in children.get(event_id, ()):
            waiting[c].discard(event_id)
            if not waiting[c]:
                heapq.heappush(ready, _key(by_id[c]))
    done = {e.event_id for e in out}
    out += sorted((e for e in events if e.event_id not in done), key=_key)
    return out


def _key(event: Event) -> tuple[int, int, str]:
    return (event.depth, event.origin_server_ts, event.event_id)
