"""Receiving PDUs from other servers: the checks on receipt, in the spec's order.

Spec: content/server-server-api.md "Checks performed on receipt of a PDU":

1. Is a valid event, otherwise it is dropped.
2. Passes signature checks, otherwise it is dropped.
3. Passes hash checks, otherwise it is redacted before being processed further.
4. Passes authorization rules based on the event's auth events, otherwise rejected.
5. Passes authorization rules based on the state before the event, otherwise rejected.
6. Passes authorization rules based on the current state of the room, otherwise it is
   "soft failed".

Before 4, what the event refers to and is not known here is fetched from the server
that sent it (bounded): missing prev events with ``/get_missing_events``; if a gap
remains, the state at the gap with ``/state``; missing auth events with
``/event_auth``. Events fetched for their own sake (auth events, state) are stored
as *outliers*: checked (1-4) but not placed in the DAG.

A rejected event is stored (so it is not fetched again) but changes nothing; a
dropped one is not stored. Either way the next PDU is processed: one bad PDU never
stops a transaction.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.events.hashing import check_content_hash
from node.events.pdu import CREATE, REDACTION, Event, StateKey
from node.events.redaction import redact
from node.events.room_versions import RoomVersion
from node.events.signing import SignatureError
from node.federation.common import FederationRequestError, Unreachable, path_segment
from node.federation.pdu_errors import PduDeferred, PduDropped, TransactionDeferred
from node.federation.pdu_format import MAX_PREV_EVENTS, PduFormatError, parse_pdu
from node.push.store import add_notification_sync
from node.rooms.auth import (
    AuthError,
    check_auth_rules,
    check_state_dependent_auth_rules,
    redaction_is_allowed,
)
from node.rooms.state_res import StateResolutionError, resolve_state
from node.storage.database import StorageError
from node.storage.events import persist_event
from node.storage.state import (
    NewGroup,
    StateIds,
    set_event_groups,
    set_room_group,
    write_group,
)

log = logging.getLogger(__name__)

# How many events one received PDU may cause to be fetched, all requests together
# (the events of a gap are held in memory until they are processed, oldest first).
FETCH_BUDGET = 5000
# /get_missing_events: events asked for per request (a server may send fewer).
MISSING_EVENTS_LIMIT = 100
# A PDU that cannot be processed because a server it needs is unreachable makes its
# transaction fail (the sender retries it) this many times before it is dropped.
MAX_DEFERRALS = 20


# Set while a transaction's PDUs are processed: their commits are fsynced together,
# once, before the transaction is answered (PduReceiver.on_pdus).
_ONE_SYNC: contextvars.ContextVar[bool] = contextvars.ContextVar("one_sync", default=False)


@dataclass
class Received:
    """What became of one PDU."""

    event_id: str
    outcome: str  # "stored", "known", "rejected", "soft_failed", "outlier"
    reason: str | None = None


class _Budget:
    def __init__(self, events: int | None = None) -> None:
        self.left = FETCH_BUDGET if events is None else events

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise PduDropped("too many events to fetch for this PDU")


class _StoreSource:
    """An EventSource (state resolution) over the store, with events in hand first."""

    def __init__(self, receiver: PduReceiver, extra: Mapping[str, Event] = {}) -> None:
        self.receiver = receiver
        self.extra = dict(extra)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        ids = list(event_ids)
        out = {i: self.extra[i] for i in ids if i in self.extra}
        rest = [i for i in ids if i not in out]
        if rest:
            stored = await self.receiver.events.get_events(rest)
            out.update({i: s.event for i, s in stored.items() if s.event.rejected_reason is None})
        return out


class PduReceiver:
    """Runs received PDUs through the checks and stores them (one room at a time)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.server_name: str = node.config.server_name
        self.events = node.events
        self.states = node.states
        self.rooms = node.rooms
        self.db = node.db
        self._deferrals: dict[tuple[str, str], int] = {}

    # -- entry points ----------------------------------------------------------------------

    async def on_pdus(self, origin: str, pdus: Sequence[Any]) -> dict[str, dict[str, str]]:
        """The PDUs of one transaction (``PUT /send``): the response's ``pdus`` map.

        The events are committed without an fsync each and made durable together
        before the answer (Database.sync): the sender retries a transaction it got no
        answer for, so nothing it was told is stored can be lost."""
        token = _ONE_SYNC.set(True)
        try:
            return await self._on_pdus(origin, pdus)
        finally:
            _ONE_SYNC.reset(token)
            try:
                await self.db.sync()
            except StorageError as e:  # closing: its last checkpoint syncs them
                log.debug("cannot sync the transaction's events: %s", e)

    async def _on_pdus(self, origin: str, pdus: Sequence[Any]) -> dict[str, dict[str, str]]:
        results: dict[str, dict[str, str]] = {}
        for index, raw in enumerate(pdus):
            label = _label(raw, index)
            try:
                received = await self.receive(origin, raw)
            except PduDeferred as e:
                label = e.event_id or label
                key = (origin, label)
                tries = self._deferrals[key] = self._deferrals.get(key, 0) + 1
                if tries <= MAX_DEFERRALS:
                    if len(self._deferrals) > 10_000:
                        self._deferrals.clear()
                    log.info("deferred PDU %s from %s (%d): %s", label, origin, tries, e)
                    raise TransactionDeferred(f"PDU {label}: {e}") from None
                self._deferrals.pop(key, None)
                log.info("dropped PDU %s from %s after %d tries: %s", label, origin, tries, e)
                results[label] = {"error": str(e)}
                continue
            except PduDropped as e:
                label = e.event_id or label
                log.info("dropped PDU %s from %s: %s", label, origin, e)
                results[label] = {"error": str(e)}
                continue
            except Exception as e:  # a bug must not stop the transaction
                log.exception("PDU %s from %s failed", label, origin)
                results[label] = {"error": f"could not process: {type(e).__name__}"}
                continue
            self._deferrals.pop((origin, received.event_id), None)
            if received.outcome == "rejected":
                results[received.event_id] = {"error": f"rejected: {received.reason}"}
            else:
                results[received.event_id] = {}
        return results

    async def receive(self, origin: str, raw: Any) -> Received:
        """Receive one PDU that ``origin`` sent us (a new event in a room we are in)."""
        version = await self._room_version_of(raw)
        try:
            parsed = parse_pdu(raw, version)
        except PduFormatError as e:
            raise PduDropped(f"not a valid event: {e}") from None
        if await self._dag_status(parsed.event_id) is not None:
            return Received(parsed.event_id, "known")  # a resent event: nothing to do
        try:
            event = await self.check_event(raw, version)
        except PduDropped as e:
            e.event_id = parsed.event_id
            raise
        try:
            async with self.rooms.lock(event.room_id):
                await self.rooms.drain(event.room_id)
                return await self._process(origin, event, _Budget())
        except PduDropped as e:
            e.event_id = e.event_id or event.event_id
            raise

    async def process_locked(self, origin: str, event: Event) -> Received:
        """Checks 4 to 6 and storage for an event that passed :meth:`check_event`; the
        caller holds the room lock and has drained the room's writes."""
        return await self._process(origin, event, _Budget())

    async def check_historical(self, origin: str, event: Event, before: StateIds) -> Event:
        """Checks 4 and 5 for an event of the room's past (node/federation/backfill.py
        stores it): its auth events are fetched from ``origin`` when unknown; ``before``
        is the state before it (its auth-relevant entries suffice). Returns the event,
        marked rejected when it fails. Soft failure (6) does not apply to history.
        Raises PduDropped when its auth chain is too large to fetch."""
        auth = await self._auth_events(origin, event, _Budget())
        create = await self._create_event(event, auth)
        try:  # 4.
            check_auth_rules(event, [auth[i] for i in event.auth_event_ids if i in auth], create)
        except AuthError as e:
            log.info("rejected backfilled %s from %s: auth events: %s", event.event_id, origin, e)
            return Event(event.event_id, event.room_version, event.raw, f"auth events: {e}")
        state = _with_create(await self._load_state(before), create, event)
        try:  # 5.
            check_state_dependent_auth_rules(event, state)
        except AuthError as e:
            log.info("rejected backfilled %s from %s: state before: %s", event.event_id, origin, e)
            reason = f"state before the event: {e}"
            return Event(event.event_id, event.room_version, event.raw, reason)
        return event

    # -- 1 to 3 -----------------------------------------------------------------------------

    async def _room_version_of(self, raw: Any) -> RoomVersion:
        room_id = raw.get("room_id") if isinstance(raw, dict) else None
        if not isinstance(room_id, str):
            raise PduDropped("not a PDU with a room_id")
        version = await self.events.get_room_version(room_id)
        if version is None or not await self.rooms.is_resident(room_id):
            raise PduDropped(f"this server is not in room {room_id}")
        return version

    async def check_event(self, raw: Any, version: RoomVersion) -> Event:
        """Checks 1 to 3: a valid event (else dropped), signed by the servers that must
        sign it (else dropped), with a matching content hash (else redacted)."""
        try:
            event = parse_pdu(raw, version)  # 1.
        except PduFormatError as e:
            raise PduDropped(f"not a valid event: {e}") from None
        return await self.check_parsed(event)

    async def check_parsed(self, event: Event) -> Event:
        """Checks 2 and 3 of an event that passed check 1 (:func:`parse_pdu`)."""
        version = event.room_version
        try:
            await self.node.keyring.verify_event_signatures(event.raw, version)  # 2.
        except SignatureError as e:
            raise PduDropped(f"{event.event_id}: bad signature: {e}") from None
        if not check_content_hash(event.raw):  # 3.
            log.warning("%s: content hash mismatch; redacting it", event.event_id)
            event = Event(event.event_id, version, redact(event.raw, version))
        return event

    # -- 4 to 6 (under the room lock) ----------------------------------------------------

    async def _process(
        self, origin: str, event: Event, budget: _Budget, *, fill_gaps: bool = True
    ) -> Received:
        known = await self._dag_status(event.event_id)
        if known is not None:
            return Received(event.event_id, "known")
        prevs = await self.events.get_events(event.prev_event_ids)
        strays = [i for i, s in prevs.items() if s.event.room_id != event.room_id]
        if strays:
            raise PduDropped(
                f"{event.event_id}: prev events in another room: {strays}", event.event_id
            )
        missing = await self._missing_prevs(event)
        if missing and fill_gaps:
            await self._fetch_missing_events(origin, event, budget)
            missing = await self._missing_prevs(event)
            budget = _Budget()  # the walk's budget is spent on the walk
        gap_states: list[StateIds] = []
        for prev_id in missing:
            gap_states.append(await self._state_after_remote(origin, event, prev_id, budget))

        auth = await self._auth_events(origin, event, budget)
        create = await self._create_event(event, auth)
        rejected: str | None = None
        try:  # 4.
            check_auth_rules(event, [auth[i] for i in event.auth_event_ids if i in auth], create)
        except AuthError as e:
            rejected = f"auth events: {e}"

        before = await self._state_before(event, gap_states)
        head = await self.rooms.head(event.room_id)
        if head is not None and head.state_ids() == before:
            before_events = head.state  # built on our head: nothing to load
        else:
            before_events = await self._load_state(before)
        if rejected is None:
            try:  # 5.
                check_state_dependent_auth_rules(event, _with_create(before_events, create, event))
            except AuthError as e:
                rejected = f"state before the event: {e}"

        soft_failed = False
        if rejected is None and head is not None:
            try:  # 6.
                check_state_dependent_auth_rules(event, _with_create(head.state, create, event))
            except AuthError as e:
                soft_failed = True
                log.info("%s soft-failed against the current state: %s", event.event_id, e)
        if rejected is not None:
            log.info("rejected %s from %s: %s", event.event_id, origin, rejected)
            event = Event(event.event_id, event.room_version, event.raw, rejected)
        await self._persist(event, before, soft_failed, before_events)
        outcome = "rejected" if rejected else "soft_failed" if soft_failed else "stored"
        return Received(event.event_id, outcome, rejected)

    async def _dag_status(self, event_id: str) -> str | None:
        # An event that left the history cache (node/history) is known: it is fetched
        # again only by the cache, to its old place.
        row = await self.db.read_now(
            lambda conn: conn.execute(
                "SELECT outlier FROM events WHERE event_id = ?1"
                " UNION ALL SELECT 0 FROM evicted_events WHERE event_id = ?1",
                (event_id,),
            ).fetchone()
        )
        if row is None or row[0]:
            return None
        return "known"

    async def _missing_prevs(self, event: Event) -> list[str]:
        prevs = list(dict.fromkeys(event.prev_event_ids))
        groups = await self.states.event_groups(prevs)
        return [p for p in prevs if p not in groups]

    async def _fetch_missing_events(self, origin: str, event: Event, budget: _Budget) -> None:
        """Fill a gap before ``event`` with /get_missing_events, walking back: each
        answer holds events before the ones asked about (back to our forward
        extremities); the next request asks about the fetched events whose prev events
        are still unknown, until none are or the budget runs out. Then the fetched
        events go through the whole pipeline oldest first and join the DAG one by one
        (what is stored stays stored if a later one fails). One at the edge of a
        truncated walk gets the state before it from /state (:meth:`_process` with
        ``fill_gaps=False``)."""
        room = event.room_id
        earliest = [eid for eid, _ in await self.events.get_forward_extremities(room)]
        fetched: dict[str, Event] = {}
        latest = [event.event_id]
        while latest and budget.left > 0:
            try:
                body = await self.node.federation_client.post_json(
                    origin,
                    f"/_matrix/federation/v1/get_missing_events/{path_segment(room)}",
                    body={
                        "earliest_events": earliest,
                        "latest_events": latest,
                        "limit": min(MISSING_EVENTS_LIMIT, budget.left),
                        "min_depth": 0,
                    },
                )
            except FederationRequestError as e:
                log.info("get_missing_events from %s failed: %s", origin, e)
                break
            pdus = body.get("events") if isinstance(body, dict) else None
            if not isinstance(pdus, list) or not pdus:
                break
            new = 0
            for raw in pdus[:MISSING_EVENTS_LIMIT]:
                try:
                    ev = await self.check_event(raw, event.room_version)
                except PduDropped as e:
                    log.info("missing event from %s dropped: %s", origin, e)
                    continue
                if ev.room_id == room and ev.event_id != event.event_id:
                    if ev.event_id not in fetched:
                        fetched[ev.event_id] = ev
                        new += 1
            budget.left -= new
            if new == 0:
                break
            wanted = {p for ev in fetched.values() for p in ev.prev_event_ids} - set(fetched)
            known = await self.states.event_groups(list(wanted))
            unknown = wanted - set(known)
            latest = [e.event_id for e in fetched.values() if unknown & set(e.prev_event_ids)]
            latest = latest[:MAX_PREV_EVENTS]
        if budget.left <= 0:
            log.info(
                "get_missing_events from %s: stopped after %d events before %s",
                origin,
                len(fetched),
                event.event_id,
            )
        # Prev events before their children (depth grows along prev edges).
        for ev in sorted(fetched.values(), key=lambda e: (e.depth, e.origin_server_ts, e.event_id)):
            try:
                await self._process(origin, ev, _Budget(), fill_gaps=False)
            except PduDeferred:
                raise
            except PduDropped as e:
                log.info("missing event %s from %s dropped: %s", ev.event_id, origin, e)

    async def _state_after_remote(
        self, origin: str, event: Event, prev_id: str, budget: _Budget
    ) -> StateIds:
        """The state after a prev event we do not have, as ``origin`` says (``/state``
        gives the state before it; the prev event itself is fetched too). Every event
        in it is checked and stored as an outlier."""
        room = path_segment(event.room_id)
        try:
            body = await self.node.federation_client.get_json(
                origin,
                f"/_matrix/federation/v1/state/{room}",
                query={"event_id": prev_id},
                timeout=120.0,
            )
            prev_raw = await self.node.federation_client.get_json(
                origin, f"/_matrix/federation/v1/event/{path_segment(prev_id)}"
            )
        except Unreachable as e:
            raise PduDeferred(f"cannot fetch the state before {prev_id}: {e}") from None
        except FederationRequestError as e:
            raise PduDropped(f"cannot fetch the state before {prev_id}: {e}") from None
        if not isinstance(body, dict) or not isinstance(prev_raw, dict):
            raise PduDropped(f"bad /state answer for {prev_id}")
        pdus = body.get("pdus")
        chain = body.get("auth_chain")
        prev_pdus = prev_raw.get("pdus")
        if not isinstance(pdus, list) or not isinstance(chain, list):
            raise PduDropped(f"bad /state answer for {prev_id}")
        budget.take(len(pdus) + len(chain))
        ids: list[str | None] = []
        stored = await self.store_outliers(
            origin,
            [*pdus, *chain, *(prev_pdus if isinstance(prev_pdus, list) else [])],
            event.room_version,
            ids,
        )
        state: StateIds = {}
        for event_id in ids[: len(pdus)]:
            ev = stored.get(event_id) if event_id else None
            if ev is not None and ev.is_state and ev.rejected_reason is None:
                state[ev.key] = ev.event_id
        prev = stored.get(prev_id)
        if prev is not None and prev.is_state and prev.rejected_reason is None:
            state[prev.key] = prev.event_id
        return state

    async def _auth_events(self, origin: str, event: Event, budget: _Budget) -> dict[str, Event]:
        """The event's auth events, fetched with /event_auth when some are unknown."""
        ids = list(dict.fromkeys(event.auth_event_ids))
        found = {i: s.event for i, s in (await self.events.get_events(ids)).items()}
        if all(i in found for i in ids):
            return found
        try:
            body = await self.node.federation_client.get_json(
                origin,
                f"/_matrix/federation/v1/event_auth/{path_segment(event.room_id)}/{path_segment(event.event_id)}",
            )
        except Unreachable as e:
            raise PduDeferred(f"cannot fetch the auth events of {event.event_id}: {e}") from None
        except FederationRequestError as e:
            log.info("event_auth for %s from %s failed: %s", event.event_id, origin, e)
            return found
        chain = body.get("auth_chain") if isinstance(body, dict) else None
        if isinstance(chain, list):
            budget.take(len(chain))
            await self.store_outliers(origin, chain, event.room_version)
        return {i: s.event for i, s in (await self.events.get_events(ids)).items()}

    async def _create_event(self, event: Event, auth: Mapping[str, Event]) -> Event | None:
        if event.type == CREATE:
            return None
        for ev in auth.values():
            if ev.type == CREATE:
                return ev
        if event.room_version.room_id_is_create_event_id:
            stored = await self.events.get_event("$" + event.room_id[1:])
            return stored.event if stored is not None else None
        return None

    async def _state_before(self, event: Event, gap_states: list[StateIds]) -> StateIds:
        """Resolve the states after the prev events (spec receive step 5)."""
        prevs = [p for p in dict.fromkeys(event.prev_event_ids)]
        groups = await self.states.event_groups(prevs)
        sets: list[StateIds] = []
        seen_groups: set[int] = set()
        for p in prevs:
            g = groups.get(p)
            if g is not None and g.after not in seen_groups:
                seen_groups.add(g.after)
                sets.append(await self.states.state_ids(g.after))
        sets += gap_states
        if not sets:
            return {}
        if len(sets) == 1:
            return dict(sets[0])
        try:
            return await resolve_state(event.room_version, sets, _StoreSource(self))
        except StateResolutionError as e:
            raise PduDropped(f"cannot resolve the state before {event.event_id}: {e}") from None

    async def _load_state(self, ids: Mapping[StateKey, str]) -> dict[StateKey, Event]:
        stored = await self.events.get_events(ids.values())
        return {k: stored[i].event for k, i in ids.items() if i in stored}

    # -- storing ---------------------------------------------------------------------------

    async def store_outliers(
        self,
        origin: str,
        raws: Sequence[Any],
        version: RoomVersion,
        ids: list[str | None] | None = None,
    ) -> dict[str, Event]:
        """Check (1-4) and store events known on their own: auth chains and state from
        another server. Returns every one of them that is stored now, by ID; ``ids``,
        if given, receives the ID of each of ``raws`` in order (None: not an event)."""
        parsed: dict[str, Event] = {}
        for raw in raws:
            try:
                ev = parse_pdu(raw, version)
            except PduFormatError as e:
                log.info("outlier from %s dropped: %s", origin, e)
                if ids is not None:
                    ids.append(None)
                continue
            if ids is not None:
                ids.append(ev.event_id)
            parsed.setdefault(ev.event_id, ev)
        stored = await self.events.get_events(parsed.keys())
        have = {i: s.event for i, s in stored.items()}
        todo = [ev for i, ev in parsed.items() if i not in have]
        checked: dict[str, Event] = dict(have)
        for ev in _auth_order(todo):
            try:
                ev = await self.check_parsed(ev)
            except PduDropped as e:
                log.info("outlier from %s dropped: %s", origin, e)
                continue
            auth = [checked[a] for a in ev.auth_event_ids if a in checked]
            if len(auth) < len(set(ev.auth_event_ids)):
                more = await self.events.get_events(
                    a for a in ev.auth_event_ids if a not in checked
                )
                auth += [s.event for s in more.values()]
            create = next((a for a in auth if a.type == CREATE), None)
            if create is None and version.room_id_is_create_event_id and ev.type != CREATE:
                create = checked.get("$" + ev.room_id[1:])
            try:
                check_auth_rules(ev, auth, create)
            except AuthError as e:
                ev = Event(ev.event_id, version, ev.raw, f"auth events: {e}")
            checked[ev.event_id] = ev
        new = [checked[ev.event_id] for ev in todo if ev.event_id in checked]
        if new:

            def write(conn: Any) -> None:
                for ev in new:
                    persist_event(conn, ev, outlier=True)

            await self.db.write_sync(write)
        return checked

    async def _persist(
        self,
        event: Event,
        before: StateIds,
        soft_failed: bool,
        before_events: Mapping[StateKey, Event] | None = None,
    ) -> None:
        """Store a checked event in the DAG with the state before and after it; move the
        room's current state and extremities unless it was rejected or soft-failed.
        Redactions apply (rooms/fragments/v3-handling-redactions.md): an accepted
        redaction to its target when its sender may, and a redaction that arrived before
        its target to the target now."""
        room_id = event.room_id
        accepted = event.rejected_reason is None
        redact_target = None
        if accepted and not soft_failed and event.type == REDACTION and event.redacts:
            redact_target = await self._redaction_target(event, before_events or {})
        redacted_by = await self.pending_redaction(event) if accepted else None
        prev_groups = await self.states.event_groups(event.prev_event_ids)
        base = next((g.after for g in prev_groups.values()), None)
        base_state = await self.states.state_ids(base) if base is not None else None
        before_group, g1 = self.states.plan(room_id, base, base_state, before)
        after = dict(before)
        if accepted and event.is_state:
            after[event.key] = event.event_id
        after_group, g2 = self.states.plan(room_id, before_group, before, after)
        new_groups = [g for g in (g1, g2) if g is not None]

        current: tuple[StateIds, StateIds, int, NewGroup | None] | None = None
        notes: list[Any] = []
        if accepted and not soft_failed:
            current = await self._new_current_state(event, after, after_group)
            if before_events is not None:
                # Notifications are recorded with the event: one commit, not two.
                state_after = dict(before_events)
                if event.is_state:
                    state_after[event.key] = event
                notes = await self.node.push.prepare(event, state_after)

        def write(conn: Any) -> int:
            stream = persist_event(
                conn,
                event,
                update_current_state=False,
                soft_failed=soft_failed,
                apply_redaction_to=redact_target,
            )
            for user_id, actions, highlight in notes:
                add_notification_sync(
                    conn, user_id, event.event_id, stream, room_id, actions, highlight
                )
            if redacted_by is not None:
                conn.execute(
                    "UPDATE events SET redacted_by = ? WHERE event_id = ? AND redacted_by IS NULL",
                    (redacted_by, event.event_id),
                )
                conn.execute("DELETE FROM pending_redactions WHERE redacts = ?", (event.event_id,))
            for g in new_groups:
                write_group(conn, g)
            set_event_groups(conn, event.event_id, before_group, after_group)
            if current is not None:
                old, new, group_id, group = current
                if group is not None:
                    write_group(conn, group)
                _write_current_state(conn, room_id, old, new)
                set_room_group(conn, room_id, group_id)
            return stream

        stream = await self.db.write_sync(write, durable=not _ONE_SYNC.get())
        self.node.push.recorded(event.event_id, notes)
        if redact_target is not None or redacted_by is not None:
            self.rooms.forget_head(room_id)  # a state event in it may be redacted now
        head = self.rooms.cached_head(room_id)
        prevs = set(event.prev_event_ids)
        if (
            current is not None
            and head is not None
            and current[1] == after
            and all(x[0] in prevs for x in head.extremities)
        ):
            # The usual case: the event extends our head; move it in memory.
            head.extremities = [(event.event_id, event.depth)]
            if event.is_state:
                head.state[event.key] = event
            head.group = after_group
        elif (
            current is not None
            and head is not None
            and current[0] == current[1]
            and not event.is_state
            and redacted_by is None
        ):
            # Another branch stays: the event only replaces its prevs as an extremity.
            head.extremities = [x for x in head.extremities if x[0] not in prevs] + [
                (event.event_id, event.depth)
            ]
            head.group = current[2]
        else:
            self.rooms.forget_head(room_id)
        if current is not None:
            head = await self.rooms.head(room_id)
            if head is not None:
                await self.rooms.run_on_persisted([(event, dict(head.state))])
        self.node.notifier.notify("events", stream)

    async def _redaction_target(
        self, redaction: Event, state: Mapping[StateKey, Event]
    ) -> str | None:
        """The event a received redaction applies to: its target if stored here and
        the sender may redact it; the target's ID when it is not stored (kept pending);
        None when the sender may not."""
        target_id = redaction.redacts
        assert target_id is not None
        stored = await self.events.get_event(target_id)
        if stored is None:
            return target_id
        if redaction_is_allowed(redaction, stored.event, state):
            return target_id
        log.info("%s may not redact %s: not applied", redaction.sender, target_id)
        return None

    async def pending_redaction(self, event: Event) -> str | None:
        """A redaction received before ``event`` that may apply to it now."""
        rows = await self.db.read_now(
            lambda conn: conn.execute(
                "SELECT redaction_id FROM pending_redactions WHERE redacts = ?", (event.event_id,)
            ).fetchall()
        )
        if not rows:
            return None
        found = await self.events.get_events(r[0] for r in rows)
        for stored in found.values():
            redaction = stored.event
            if redaction.rejected_reason is not None:
                continue
            state_ids = await self.states.state_before(redaction.event_id) or {}
            state = await self._load_state(state_ids)
            if redaction_is_allowed(redaction, event, state):
                return redaction.event_id
        return None

    async def _new_current_state(
        self, event: Event, after: StateIds, after_group: int
    ) -> tuple[StateIds, StateIds, int, NewGroup | None]:
        """The room's state once ``event`` is a forward extremity: the resolution of
        the states after every extremity (just ``after`` when it succeeds them all)."""
        room_id = event.room_id
        old_group = await self.states.room_group(room_id)
        old = await self.events.get_current_state_ids(room_id)
        extremities = [e for e, _ in await self.events.get_forward_extremities(room_id)]
        others = [e for e in extremities if e not in set(event.prev_event_ids)]
        if not others:
            return old, after, after_group, None
        replaces_one = len(event.prev_event_ids) == 1 and len(others) < len(extremities)
        if not event.is_state and replaces_one and old_group is not None:
            # A message replacing one extremity: the states to resolve are the same as
            # before it (the state after it is its prev's), so is their resolution.
            return old, old, old_group, None
        groups = await self.states.event_groups(others)
        sets = [after] + [
            await self.states.state_ids(g) for g in {x.after for x in groups.values()}
        ]
        try:
            # The event is not stored yet: the resolution must see it (it may be in
            # the conflicted set), or a state event losing nothing would lose.
            source = _StoreSource(self, {event.event_id: event})
            new = await resolve_state(event.room_version, sets, source)
        except StateResolutionError as e:
            log.warning("cannot resolve the state of %s: %s; keeping it", room_id, e)
            new = old
        if new == after:
            return old, new, after_group, None
        group_id, group = self.states.plan(room_id, old_group, old, new)
        return old, new, group_id, group


def _write_current_state(conn: Any, room_id: str, old: StateIds, new: StateIds) -> None:
    conn.executemany(
        "DELETE FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?",
        [(room_id, t, k) for (t, k) in old if (t, k) not in new],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO current_state (room_id, type, state_key, event_id)"
        " VALUES (?, ?, ?, ?)",
        [(room_id, t, k, e) for (t, k), e in new.items() if old.get((t, k)) != e],
    )


def _with_create(
    state: Mapping[StateKey, Event], create: Event | None, event: Event
) -> dict[StateKey, Event]:
    out = dict(state)
    if create is not None and (CREATE, "") not in out:
        out[(CREATE, "")] = create
    return out


def _auth_order(events: list[Event]) -> list[Event]:
    """Events ordered so each comes after the auth events among them (Kahn's sort, by
    depth then ID among those ready; cycles, which only forged events make, keep their
    input order at the end). Linear in the number of auth links."""
    import heapq

    by_id = {e.event_id: e for e in events}
    waiting = {e.event_id: {a for a in e.auth_event_ids if a in by_id} for e in events}
    needed_by: dict[str, list[str]] = {}
    for event_id, deps in waiting.items():
        for dep in deps:
            needed_by.setdefault(dep, []).append(event_id)
    ready = [(e.depth, e.event_id) for e in events if not waiting[e.event_id]]
    heapq.heapify(ready)
    out: list[Event] = []
    done: set[str] = set()
    while ready:
        _, event_id = heapq.heappop(ready)
        if event_id in done:
            continue
        done.add(event_id)
        out.append(by_id[event_id])
        for other in needed_by.get(event_id, ()):
            deps = waiting[other]
            deps.discard(event_id)
            if not deps and other not in done:
                heapq.heappush(ready, (by_id[other].depth, other))
    out += [e for e in events if e.event_id not in done]
    return out


def _label(raw: Any, index: int) -> str:
    if isinstance(raw, dict):
        room_id = raw.get("room_id")
        if isinstance(room_id, str):
            return f"(PDU {index} in {room_id})"
    return f"(PDU {index})"
