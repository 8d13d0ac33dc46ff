"""RoomService: create rooms and send events, one lock per room.

Flow of a send (DESIGN.md "Flows"): transaction-ID dedupe -> room lock -> build on
the forward extremities with auth events from the current state -> hash, sign ->
auth check -> persist in one durable transaction (with the transaction ID) ->
update the in-memory room head -> run the ``on_persisted`` callbacks (outside the
room lock; push notifications hook in here, so rooms need not know about push) ->
return the event ID.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiosqlite

from node.errors import MatrixError, bad_json, forbidden
from node.events.canonical import InvalidJson, check_canonical_values
from node.events.pdu import CREATE, MEMBER, Event, StateKey
from node.events.room_versions import RoomVersion
from node.federation.keys import ServerKey
from node.rooms.auth import AuthError, check_auth_rules, redaction_is_allowed
from node.rooms.builder import EventTooLarge, build_event, room_id_for_create
from node.rooms.creation import RoomRequest, plan_room
from node.storage.database import Database, in_thread
from node.storage.events import (
    DuplicateTxn,
    EventStore,
    MissingPrevEvents,
    TxnKey,
    persist_event,
    redacted_event,
    state_map,
)
from node.storage.state import NewGroup, StateStore, set_event_groups, set_room_group, write_group
from node.sync.notifier import Notifier

log = logging.getLogger(__name__)

# How many rooms keep their head (extremities and current state) in memory.
HEAD_CACHE_ROOMS = 64
# How many recently committed transaction IDs are remembered (a client retrying at
# once is answered without a write).
RECENT_TXNS = 1024
# How often a send is built again after it was queued on an event that was not stored.
MAX_REBUILDS = 3


class OutboundQueue(Protocol):
    """What the room service needs of the federation sender (node/federation/sender.py)."""

    def queue_pdu_sync(
        self, conn: sqlite3.Connection, event_id: str, destinations: Iterable[str]
    ) -> None: ...

    def wake(self, destinations: Iterable[str]) -> None: ...


class RemoteRooms(Protocol):
    """What the room service needs of node/federation/joins.py."""

    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str: ...

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str: ...

    async def leave(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str: ...

    async def invite_remote(self, event: Event, state: Mapping[StateKey, Event]) -> Event: ...


# Called after an event is durably persisted, with the event and the room state with
# the event applied (a copy the callback may keep).
PersistedCallback = Callable[[Event, Mapping[StateKey, Event]], Awaitable[None]]


@dataclass
class _Send:
    """One local send, kept until it is durable (it may have to be built again)."""

    sender: str
    room_id: str
    event_type: str
    content: dict[str, Any]
    state_key: str | None
    txn: TxnKey | None
    redacts: str | None
    rebuilds: int = 0
    destinations: frozenset[str] = frozenset()
    # An invite of a user on another server: their server countersigns it first.
    countersign: Callable[[Event, Mapping[StateKey, Event]], Awaitable[Event]] | None = None


@dataclass(frozen=True, slots=True)
class GroupsWrite:
    """The state groups an event's write records (node/storage/state.py): the state
    before and after it, a new group to store, and whether the room's current state
    moved to ``after``."""

    before: int
    after: int
    new_group: NewGroup | None
    room_current: bool


def write_groups(conn: sqlite3.Connection, room_id: str, event_id: str, g: GroupsWrite) -> None:
    """Store what ``g`` records (a plain function, in the event's own write job)."""
    if g.new_group is not None:
        write_group(conn, g.new_group)
    set_event_groups(conn, event_id, g.before, g.after)
    if g.room_current:
        set_room_group(conn, room_id, g.after)


@dataclass
class RoomHead:
    """What building the next event in a room needs: its version, the forward
    extremities, the current state and the state group holding it."""

    room_version: RoomVersion
    extremities: list[tuple[str, int]]
    state: dict[StateKey, Event]
    group: int | None = None

    @property
    def create_event(self) -> Event | None:
        return self.state.get((CREATE, ""))

    def state_ids(self) -> dict[StateKey, str]:
        return {key: ev.event_id for key, ev in self.state.items()}

    def advance(self, event: Event, states: StateStore | None = None) -> GroupsWrite | None:
        """Put ``event`` (built on every extremity) at the head. With ``states``, also
        plan the state groups its write records."""
        prev = set(event.prev_event_ids)
        self.extremities = [(event.event_id, event.depth)] + [
            x for x in self.extremities if x[0] not in prev
        ]
        before = self.group
        new_group = None
        if event.is_state:
            old_ids = self.state_ids() if states is not None else None
            self.state[event.key] = event
            if states is not None:
                self.group, new_group = states.plan(
                    event.room_id, before, old_ids, self.state_ids()
                )
        if states is None or self.group is None:
            return None
        return GroupsWrite(
            before if before is not None else self.group,
            self.group,
            new_group,
            new_group is not None,
        )


class RoomService:
    def __init__(
        self,
        db: Database,
        events: EventStore,
        server_key: ServerKey,
        notifier: Notifier,
        states: StateStore,
    ) -> None:
        self.db = db
        self.events = events
        self.states = states
        self.server_key = server_key
        self.notifier = notifier
        self._locks: dict[str, asyncio.Lock] = {}
        self._heads: OrderedDict[str, RoomHead] = OrderedDict()
        self.on_persisted: list[PersistedCallback] = []
        # Events queued for writing and not yet committed, and per room how many: a
        # room with writes in flight keeps its head in memory (the store lags it).
        self._unpersisted: dict[str, Event] = {}
        self._inflight: dict[str, int] = {}
        self._txns_inflight: dict[TxnKey, asyncio.Future[str]] = {}
        self._txns_recent: OrderedDict[TxnKey, str] = OrderedDict()
        self._tasks: set[asyncio.Future[None]] = set()
        # The newest queued write per room (writes commit in queue order).
        self._last_write: dict[str, asyncio.Future[int]] = {}
        # Outbound federation (node/federation/sender.py), set when federation runs.
        self.sender: OutboundQueue | None = None
        # Membership through other servers (node/federation/joins.py).
        self.remote: RemoteRooms | None = None

    def lock(self, room_id: str) -> asyncio.Lock:
        """The room's lock: held while an event is built or received into the room."""
        return self._lock(room_id)

    async def drain(self, room_id: str) -> None:
        """Wait until every write queued for the room has settled (call it holding the
        room lock: then the store holds the room's head)."""
        last = self._last_write.get(room_id)
        if last is not None:
            await asyncio.wait([last])
            if self._last_write.get(room_id) is last:
                del self._last_write[room_id]

    async def head(self, room_id: str) -> RoomHead | None:
        return await self._head(room_id)

    def cached_head(self, room_id: str) -> RoomHead | None:
        return self._heads.get(room_id)

    def forget_head(self, room_id: str) -> None:
        """Drop the cached head (the store moved it: an event received from a peer)."""
        self._heads.pop(room_id, None)

    async def run_on_persisted(self, persisted: list[tuple[Event, dict[StateKey, Event]]]) -> None:
        await self._run_on_persisted(persisted)

    def _lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    async def _head(self, room_id: str) -> RoomHead | None:
        head = self._heads.get(room_id)
        if head is not None:
            self._heads.move_to_end(room_id)
            return head
        version = await self.events.get_room_version(room_id)
        if version is None:
            return None
        ids = await self.events.get_current_state_ids(room_id)
        stored = await self.events.get_events(ids.values())
        head = RoomHead(
            version,
            await self.events.get_forward_extremities(room_id),
            state_map(stored, ids),
            await self.states.room_group(room_id),
        )
        self._heads[room_id] = head
        self._evict_heads()
        return head

    def _evict_heads(self) -> None:
        """Keep at most HEAD_CACHE_ROOMS heads, never one with writes in flight."""
        excess = len(self._heads) - HEAD_CACHE_ROOMS
        if excess <= 0:
            return
        for room_id in [r for r in self._heads if r not in self._inflight][:excess]:
            del self._heads[room_id]

    # -- sending -------------------------------------------------------------------------

    async def send(
        self,
        sender: str,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        state_key: str | None = None,
        txn: TxnKey | None = None,
        redacts: str | None = None,
    ) -> str:
        """Send an event as the local user ``sender``; returns its event ID once durable.

        For an ``m.room.redaction``, ``redacts`` names the target: in the content from
        room v11, at the top level before.

        Pipelined: under the room lock the event is built on the in-memory head,
        checked, and its write queued; the lock is released before the commit, so the
        next send builds on it while the writer commits both in one transaction
        (writes commit in queue order, and ``persist_event`` refuses an event whose
        prev events are not stored, so a failed write takes its successors with it)."""
        content = _checked_content(content)
        return await self._send(
            _Send(sender, room_id, event_type, content, state_key, txn, redacts)
        )

    async def _send(self, req: _Send) -> str:
        known = self._known_txn(req.txn)
        if known is not None:
            return await known
        async with self._lock(req.room_id):
            # A retry with the same transaction ID may have been queued while we waited.
            known = self._known_txn(req.txn)
            if known is None:
                head = await self._head(req.room_id)
                if head is None:
                    raise forbidden(f"{req.sender} is not in room {req.room_id}")
                target = await self._find_event(req.redacts) if req.redacts else None
                prebuilt = None
                if req.countersign is not None:
                    # Held under the lock: the head cannot move while their server signs.
                    event, _ = self._build_checked(head, req)
                    prebuilt = await req.countersign(event, head.state)
                written = self._queue_send(head, req, target, prebuilt)
        if known is not None:
            return await known
        return await written

    async def _find_event(self, event_id: str) -> Event | None:
        """An event of any room, committed or still queued."""
        queued = self._unpersisted.get(event_id)
        if queued is not None:
            return queued
        # Not queued: committed already (it leaves the queue only after its commit) or
        # unknown, so the store has the answer.
        stored = await self.events.get_event(event_id)
        return stored.event if stored is not None else None

    def _build_checked(self, head: RoomHead, req: _Send) -> tuple[Event, bytes]:
        """The event, authorised, and its canonical JSON (what the store writes)."""
        content, extra = req.content, {}
        if req.redacts is not None:
            if head.room_version.redacts_in_content:
                content = {**content, "redacts": req.redacts}
            else:
                extra["redacts"] = req.redacts
        event, encoded = self._build(
            head, req.room_id, req.sender, req.event_type, content, req.state_key, extra
        )
        self._authorise(event, head)
        return event, encoded

    def _queue_send(
        self,
        head: RoomHead,
        req: _Send,
        redaction_target: Event | None,
        prebuilt: Event | None = None,
    ) -> Awaitable[str]:
        """Build, check and queue the write of one event (under the room lock; no
        awaits, so the head cannot change underneath). Returns what to await."""
        encoded: bytes | None = None  # a countersigned event is encoded by the store
        if prebuilt is not None:
            event = prebuilt
        else:
            event, encoded = self._build_checked(head, req)
        target = self._redaction_target(event, head, redaction_target) if req.redacts else None
        txn = req.txn
        destinations = self._destinations(event, head)
        req.destinations = frozenset(destinations)
        groups = head.advance(event, self.states)
        sender = self.sender

        def write(conn: sqlite3.Connection) -> int:
            stream = persist_event(
                conn,
                event,
                txn=txn,
                apply_redaction_to=target,
                require_prev_events=True,
                encoded=encoded,
            )
            if groups is not None:
                write_groups(conn, event.room_id, event.event_id, groups)
            if destinations and sender is not None:
                sender.queue_pdu_sync(conn, event.event_id, destinations)
            return stream

        future = self.db.submit_sync(write)
        self._last_write[req.room_id] = future
        if target is not None:
            self._redact_in_head(head, target, event)
        state = dict(head.state) if self.on_persisted else None
        self._unpersisted[event.event_id] = event
        self._inflight[req.room_id] = self._inflight.get(req.room_id, 0) + 1
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if txn is not None:
            self._txns_inflight[txn] = done
        task = asyncio.ensure_future(self._after_write(future, done, event, state, req))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return asyncio.shield(done)

    async def _after_write(
        self,
        written: asyncio.Future[int],
        done: asyncio.Future[str],
        event: Event,
        state: dict[StateKey, Event] | None,
        req: _Send,
    ) -> None:
        """Once the write of a queued event settles: bookkeeping, callbacks, wake-ups.
        Runs as its own task, so a client hanging up changes nothing here.

        Two outcomes leave the in-memory head ahead of the store, so it is dropped
        (and reloaded by the next send): the transaction ID turned out to be taken
        (a retry of a send from before a restart: answer with that event), or a prev
        event was not stored (this send was queued on one of those, or on a failed
        write: build it again on the store's head; the client was not answered yet)."""
        room_id, txn = event.room_id, req.txn
        outcome: int | str | BaseException
        try:
            outcome = await written
        except DuplicateTxn as dup:
            outcome = dup.event_id
        except BaseException as e:
            outcome = e
        self._unpersisted.pop(event.event_id, None)
        left = self._inflight.get(room_id, 1) - 1
        if left:
            self._inflight[room_id] = left
        else:
            self._inflight.pop(room_id, None)
        if txn is not None:
            self._txns_inflight.pop(txn, None)
        if not isinstance(outcome, int):
            self._heads.pop(room_id, None)
            await self._settle_unstored(done, event, req, outcome)
            return
        if txn is not None:
            self._remember_txn(txn, event.event_id)
        if self.sender is not None:
            self.sender.wake(req.destinations)
        try:
            if state is not None:
                await self._call_on_persisted([(event, state)])  # a task of its own already
        finally:
            self.notifier.notify("events", outcome)
            if not done.done():
                done.set_result(event.event_id)

    async def _settle_unstored(
        self, done: asyncio.Future[str], event: Event, req: _Send, outcome: str | BaseException
    ) -> None:
        try:
            if isinstance(outcome, str):  # the transaction ID's earlier event
                assert req.txn is not None
                self._remember_txn(req.txn, outcome)
                result = outcome
            elif isinstance(outcome, MissingPrevEvents) and req.rebuilds < MAX_REBUILDS:
                req.rebuilds += 1
                log.info("rebuilding %s in %s: %s", event.event_id, req.room_id, outcome)
                result = await self._send(req)
            else:
                log.error("event %s in %s was not stored: %s", event.event_id, req.room_id, outcome)
                raise outcome if isinstance(outcome, MatrixError) else _not_stored(event.event_id)
        except BaseException as e:
            if not done.done():
                done.set_exception(e)
        else:
            if not done.done():
                done.set_result(result)

    def _destinations(self, event: Event, head: RoomHead) -> set[str]:
        """The other servers an event goes to: every server with a joined member (in the
        state before it), and the server of the user a membership event is about (not
        for an invite: that server had it through /invite, and is not in the room)."""
        if self.sender is None:
            return set()
        servers = {
            key[1].split(":", 1)[1]
            for key, ev in head.state.items()
            if key[0] == MEMBER and ev.membership == "join" and ":" in key[1]
        }
        if (
            event.type == MEMBER
            and event.state_key
            and ":" in event.state_key
            and event.membership != "invite"
        ):
            servers.add(event.state_key.split(":", 1)[1])
        servers.discard(self.server_key.server_name)
        return servers

    def _remember_txn(self, txn: TxnKey, event_id: str) -> None:
        self._txns_recent[txn] = event_id
        while len(self._txns_recent) > RECENT_TXNS:
            self._txns_recent.popitem(last=False)

    def _known_txn(self, txn: TxnKey | None) -> Awaitable[str] | None:
        """What a send with this transaction ID already produced in this process: an
        event still being written (wait for it) or a recent one. Older ones, from
        before a restart, are found by the write itself (``DuplicateTxn``)."""
        if txn is None:
            return None
        found = self._txns_inflight.get(txn)
        if found is not None:
            return asyncio.shield(found)
        recent = self._txns_recent.get(txn)
        return _resolved(recent) if recent is not None else None

    async def _run_on_persisted(self, persisted: list[tuple[Event, dict[StateKey, Event]]]) -> None:
        """Run the callbacks for each persisted event; a failure is logged, not raised
        (the event is stored either way), and a client hanging up does not stop them."""
        if persisted:
            await asyncio.shield(self._call_on_persisted(persisted))

    async def _call_on_persisted(
        self, persisted: list[tuple[Event, dict[StateKey, Event]]]
    ) -> None:
        """The callbacks themselves, in the caller's task (one that nothing cancels)."""
        for event, state in persisted:
            for callback in self.on_persisted:
                try:
                    await callback(event, state)
                except Exception:
                    log.exception("on_persisted callback failed for %s", event.event_id)

    def _build(
        self,
        head: RoomHead,
        room_id: str | None,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[Event, bytes]:
        try:
            return build_event(
                room_version=head.room_version,
                server_key=self.server_key,
                room_id=room_id,
                sender=sender,
                event_type=event_type,
                content=content,
                state_key=state_key,
                prev_events=head.extremities,
                state=head.state,
                origin_server_ts=int(time.time() * 1000),
                extra=extra,
            )
        except EventTooLarge as e:
            raise MatrixError(413, "M_TOO_LARGE", str(e)) from None

    async def set_membership(
        self,
        sender: str,
        room_id: str,
        target: str,
        membership: str,
        *,
        reason: str | None = None,
        content: Mapping[str, Any] | None = None,
        txn: TxnKey | None = None,
        servers: Sequence[str] = (),
    ) -> str:
        """Send an m.room.member event (join, leave, invite, ban, knock) for ``target``.
        The auth rules decide whether ``sender`` may.

        A join, knock or leave of our own user in a room this server is not in goes
        through a resident server (``servers`` first, then the servers this server
        knows to be in the room); an invite of a user on another server is
        countersigned by that server first (node/federation/joins.py)."""
        body: dict[str, Any] = dict(content or {})
        body["membership"] = membership
        if reason is not None:
            body["reason"] = reason
        head = await self._head(room_id)
        ours = self.server_key.server_name
        if sender == target and membership in ("join", "knock", "leave"):
            if not self._resident(head, sender):
                if self.remote is None:
                    raise MatrixError(404, "M_NOT_FOUND", f"Room {room_id} is not known here")
                via = [*servers, *self._known_servers(room_id, head)]
                try:
                    if membership == "join":
                        return await self.remote.join(sender, room_id, via, body)
                    if membership == "knock":
                        return await self.remote.knock(sender, room_id, via, body)
                    return await self.remote.leave(sender, room_id, via, body)
                except MatrixError as e:
                    # No server in the room could be reached (offline, or a LAN
                    # partition): with the room's state at hand, the event is built
                    # here and reaches the others when they are back.
                    if e.status != 502 or head is None or head.create_event is None:
                        raise
                    log.info("building the %s of %s here: %s", membership, room_id, e)
        if head is None or head.create_event is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Room {room_id} is not known to this server")
        countersign = None
        if membership == "invite" and not target.endswith(":" + ours):
            if self.remote is None:
                raise MatrixError(400, "M_UNKNOWN", "Federation is off: cannot invite " + target)
            countersign = self.remote.invite_remote
        checked = _checked_content(body)
        return await self._send(
            _Send(sender, room_id, MEMBER, checked, target, txn, None, countersign=countersign)
        )

    def _resident(self, head: RoomHead | None, user_id: str) -> bool:
        """Whether events of ``user_id``'s membership can be built here: we hold the
        room's state and either the user is joined or no other server is."""
        if head is None or head.create_event is None:
            return False
        own = head.state.get((MEMBER, user_id))
        if own is not None and own.membership == "join":
            return True
        ours = self.server_key.server_name
        return not any(
            key[0] == MEMBER and ev.membership == "join" and not key[1].endswith(":" + ours)
            for key, ev in head.state.items()
        )

    async def is_resident(self, room_id: str) -> bool:
        """Whether a user of this server is joined to the room."""
        head = await self._head(room_id)
        if head is None or head.create_event is None:
            return False
        ours = ":" + self.server_key.server_name
        return any(
            key[0] == MEMBER and key[1].endswith(ours) and ev.membership == "join"
            for key, ev in head.state.items()
        )

    def _known_servers(self, room_id: str, head: RoomHead | None) -> list[str]:
        """Servers to try for a join: who invited us, the room ID's server (before v12),
        then servers with joined members in the state we hold."""
        out: list[str] = []
        if head is not None:
            for (etype, skey), ev in head.state.items():
                if etype == MEMBER and skey.endswith(":" + self.server_key.server_name):
                    out.append(ev.sender.split(":", 1)[-1])
        if ":" in room_id:
            out.append(room_id.split(":", 1)[1])
        if head is not None:
            out += [
                key[1].split(":", 1)[1]
                for key, ev in head.state.items()
                if key[0] == MEMBER and ev.membership == "join" and ":" in key[1]
            ]
        return list(dict.fromkeys(s for s in out if s != self.server_key.server_name))

    @staticmethod
    def _redaction_target(redaction: Event, head: RoomHead, target: Event | None) -> str | None:
        """Spec "Handling redactions" (rooms/fragments/v3-handling-redactions.md): the
        redaction is applied when its sender may redact the target; a local user who
        may not gets 403. An unknown target is recorded and applied if it arrives.
        ``target`` is the event the redaction names, if this server has it."""
        target_id = redaction.redacts
        assert target_id is not None
        if target is None or target.room_id != redaction.room_id:
            return target_id  # not known here (yet): kept as a pending redaction
        if not redaction_is_allowed(redaction, target, head.state):
            raise forbidden("You may not redact this event")
        return target_id

    @staticmethod
    def _redact_in_head(head: RoomHead, target: str, redaction: Event) -> None:
        """A redacted state event stays in the state, redacted: keep the head in step."""
        for key, ev in list(head.state.items()):
            if ev.event_id == target:
                head.state[key] = redacted_event(ev, redaction)

    @staticmethod
    def _authorise(event: Event, head: RoomHead) -> None:
        auth_events = [e for e in head.state.values() if e.event_id in event.auth_event_ids]
        try:
            check_auth_rules(event, auth_events, head.create_event)
        except AuthError as e:
            raise forbidden(f"Not allowed: {e}") from None

    # -- creating ------------------------------------------------------------------------

    async def create_room(
        self,
        req: RoomRequest,
        *,
        also_txn: Callable[[aiosqlite.Connection, str], Awaitable[None]] | None = None,
    ) -> str:
        """Build and persist the events of a new room in one durable transaction.

        ``also_txn(conn, room_id)`` runs in that same transaction after the events are
        stored (the directory adds the room's alias there); if it raises, nothing of
        the room is stored and the error propagates."""
        plan = plan_room(req)
        head = RoomHead(req.room_version, [], {})
        room_id: str | None = None
        if not req.room_version.room_id_is_create_event_id:
            room_id = f"!{secrets.token_urlsafe(12)}:{self.server_key.server_name}"
        built: list[tuple[Event, GroupsWrite | None]] = []
        states: list[dict[StateKey, Event]] = []
        for planned in plan:
            content = _checked_content(planned.content)
            event, _ = self._build(
                head, room_id, req.creator, planned.type, content, planned.state_key
            )
            if room_id is None:
                room_id = room_id_for_create(event)  # v12: the create event's ID
            self._authorise(event, head)
            built.append((event, head.advance(event, self.states)))
            if self.on_persisted:
                states.append(dict(head.state))
        assert room_id is not None
        final_room_id = room_id

        async def txn(conn: aiosqlite.Connection) -> int:
            await EventStore.store_room_txn(conn, final_room_id, req.room_version.identifier)
            stream = 0
            for event, groups in built:
                stream = await EventStore.persist_event_txn(conn, event)
                if groups is not None:
                    g = groups
                    await in_thread(
                        conn, lambda raw, e=event, g=g: write_groups(raw, e.room_id, e.event_id, g)
                    )
            if also_txn is not None:
                await also_txn(conn, final_room_id)
            return stream

        async with self._lock(room_id):
            stream = await self.db.write(txn)
            self._heads[room_id] = head
            self._evict_heads()
        try:
            await self._run_on_persisted(list(zip([e for e, _ in built], states, strict=False)))
        finally:
            self.notifier.notify("events", stream)
        return room_id


def _not_stored(event_id: str) -> MatrixError:
    return MatrixError(500, "M_UNKNOWN", f"The event {event_id} could not be stored; send it again")


async def _resolved(value: str) -> str:
    return value


def _checked_content(content: Mapping[str, Any]) -> dict[str, Any]:
    """Event content must be canonical-JSON-safe (room v6+): integers in range, no floats."""
    try:
        checked = check_canonical_values(dict(content))
    except InvalidJson as e:
        raise bad_json(f"Event content is not valid canonical JSON: {e}") from None
    assert isinstance(checked, dict)
    return checked
