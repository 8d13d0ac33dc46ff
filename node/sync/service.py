"""Assembling /sync: room timelines and state, then every registered extension.

Spec: content/client-server-api/_index.md "Syncing" and api/client-server/sync.yaml.
Per joined room: an initial (or full_state, or newly joined) sync returns the last
``limit`` timeline events and, in ``state``, the current state less what the
timeline carries; an incremental sync returns the events after ``since`` (newest
``limit`` of them, ``limited`` when there were more) and, when limited, the state
that changed in the gap. ``prev_batch`` is a /messages token just before the
timeline. With ``lazy_load_members`` only the members who sent timeline events
(and the user) are in ``state``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from node.events.client_format import to_client_event
from node.events.pdu import MEMBER, Event, StateKey
from node.storage.events import EventStore, StoredEvent
from node.sync.context import SyncContext, SyncExtension
from node.sync.filters import RoomFilter, SyncFilter, apply_event_fields
from node.sync.notifier import Notifier
from node.sync.tokens import StreamToken

log = logging.getLogger(__name__)

MAX_TIMEOUT_MS = 5 * 60 * 1000


BundleHook = Callable[[Sequence[tuple[Event, dict[str, Any]]], str], Awaitable[None]]


def pagination_token(stream_ordering: int) -> str:
    """A /messages token: the position just after ``stream_ordering``."""
    return f"p{stream_ordering}"


class SyncService:
    def __init__(self, events: EventStore, notifier: Notifier) -> None:
        self.events = events
        self.notifier = notifier
        self.extensions: list[SyncExtension] = []
        # Adds bundled aggregations to served events (node/relations/service.py); called
        # for a timeline that is ``limited`` ("Aggregations of child events").
        self.bundle_aggregations: BundleHook | None = None

    async def sync(
        self,
        user_id: str,
        device_id: str,
        *,
        since: StreamToken | None,
        sync_filter: SyncFilter,
        full_state: bool,
        timeout_ms: int,
    ) -> dict[str, Any]:
        """Build a sync response; with ``since`` and nothing new, wait up to the timeout."""
        deadline = time.monotonic() + min(max(timeout_ms, 0), MAX_TIMEOUT_MS) / 1000
        while True:
            upto = self.notifier.current_token()
            ctx = SyncContext(user_id, device_id, since, upto, full_state, sync_filter)
            await self._build(ctx)
            remaining = deadline - time.monotonic()
            if since is None or full_state or _has_content(ctx.response) or remaining <= 0:
                break
            if self.notifier.closed:
                break  # the node is stopping: answer with what there is
            # Nothing new for this client: wait for any stream to move, then build again.
            await self.notifier.wait_for_change(upto, remaining)
        ctx.response["next_batch"] = str(ctx.upto)
        return ctx.response

    async def _build(self, ctx: SyncContext) -> None:
        room_filter = ctx.filter.room
        upto_pos = ctx.upto.get("events")
        overview = await self.events.get_sync_overview(
            ctx.user_id, ctx.since_position("events") if ctx.since is not None else None, upto_pos
        )
        memberships, changed, forgotten = overview.memberships, overview.changed, overview.forgotten
        if ctx.since is not None:
            ctx.membership_changes = changed
        # Timeline events this user sent, with their served ``unsigned``: the ones this
        # device sent get unsigned.transaction_id, from one lookup for the whole sync.
        own: list[tuple[str, dict[str, Any]]] = []
        # A room is new to this sync when the user was not joined at ``since``: a join
        # that only changed the display name is not a new room.
        joined_before: set[str] = set()
        if ctx.since is not None and changed:
            was = await self.events.get_memberships_at(
                ctx.user_id, changed, ctx.since_position("events")
            )
            joined_before = {room for room, m in was.items() if m == "join"}
        for room_id, stored in memberships.items():
            if stored.stream_ordering > upto_pos:
                continue  # a change this sync does not cover yet
            membership = stored.event.membership
            if not room_filter.allows_room(room_id):
                continue
            if membership == "join":
                ctx.joined_rooms.append(room_id)
                newly = ctx.since is not None and room_id in changed
                newly = newly and room_id not in joined_before
                await self._joined_room(
                    ctx, room_id, initial=ctx.since is None or ctx.full_state or newly, own=own
                )
            elif membership == "invite":
                if ctx.since is None or room_id in changed:
                    self._invited_room(ctx, room_id, stored.event)
            elif membership in ("leave", "ban") and room_id not in forgotten:
                if (ctx.since is not None and room_id in changed) or (
                    ctx.since is None and room_filter.include_leave
                ):
                    await self._left_room(ctx, room_id, stored, own)
        await add_transaction_ids(self.events, ctx.user_id, ctx.device_id, own)
        for ext in self.extensions:
            try:
                await ext.add_to_sync(ctx)
            except Exception:
                log.exception("sync extension %s failed", type(ext).__name__)
                raise

    # -- joined rooms --------------------------------------------------------------------

    async def _joined_room(
        self,
        ctx: SyncContext,
        room_id: str,
        *,
        initial: bool,
        own: list[tuple[str, dict[str, Any]]],
    ) -> None:
        rf = ctx.filter.room
        upto = ctx.upto.get("events")
        after = None if initial else ctx.since_position("events")
        timeline, limited = await self._timeline(room_id, rf, after=after, upto=upto)
        state_ids = await self.events.get_current_state_ids(room_id)
        in_timeline = {s.event.event_id for s in timeline}
        if initial:
            keys: Iterable[StateKey] = state_ids.keys()
        elif limited and timeline:
            gap_end = timeline[0].stream_ordering - 1
            keys = await self.events.get_state_keys_changed(room_id, after or 0, gap_end)
        else:
            keys = ()
        state_keys = {k for k in keys if rf.state.allows({"type": k[0]})}
        if rf.state.lazy_load_members:
            senders = {s.event.sender for s in timeline} | {ctx.user_id}
            state_keys = {k for k in state_keys if k[0] != MEMBER or k[1] in senders}
            if not initial and limited:
                state_keys |= {(MEMBER, s) for s in senders if (MEMBER, s) in state_ids}
        wanted = [state_ids[k] for k in state_keys if k in state_ids]
        stored = await self.events.get_events(e for e in wanted if e not in in_timeline)
        state_events = sorted(stored.values(), key=lambda s: s.stream_ordering)
        if not initial and not timeline and not state_events:
            return  # nothing happened in this room; extensions may still add to it
        fields = ctx.filter.event_fields
        room = ctx.joined_room(room_id)
        served = [(s.event, _client(s.event, fields, ctx.user_id, own)) for s in timeline]
        if limited and self.bundle_aggregations is not None:
            await self.bundle_aggregations(served, ctx.user_id)
        room["timeline"] = {
            "events": [out for _, out in served],
            "limited": limited,
            "prev_batch": pagination_token((timeline[0].stream_ordering - 1) if timeline else upto),
        }
        room["state"] = {"events": [_client(s.event, fields) for s in state_events]}
        if initial or any(s.event.type == MEMBER for s in (*timeline, *state_events)):
            room["summary"] = await self._summary(room_id, ctx.user_id, state_ids)

    async def _timeline(
        self, room_id: str, rf: RoomFilter, *, after: int | None, upto: int
    ) -> tuple[list[StoredEvent], bool]:
        limit = rf.timeline_limit
        want = limit + 1
        picked: list[StoredEvent] = []
        cursor = upto
        # Read newest first in pages, keeping what the timeline filter allows.
        while len(picked) < want:
            page = await self.events.get_room_events(
                room_id, after=after, upto=cursor, limit=max(50, want), newest_first=True
            )
            if not page:
                break
            for s in page:
                if rf.timeline.allows(s.event.raw):
                    picked.append(s)
            cursor = page[-1].stream_ordering - 1
            if len(page) < max(50, want):
                break
        limited = len(picked) > limit
        timeline = list(reversed(picked[:limit]))
        return timeline, limited

    async def _summary(
        self, room_id: str, user_id: str, state_ids: dict[StateKey, str]
    ) -> dict[str, Any]:
        member_ids = [eid for (t, _), eid in state_ids.items() if t == MEMBER]
        members = await self.events.get_events(member_ids)
        joined = [s.event.state_key for s in members.values() if s.event.membership == "join"]
        invited = [s.event.state_key for s in members.values() if s.event.membership == "invite"]
        heroes = sorted(u for u in (*joined, *invited) if u and u != user_id)[:5]
        return {
            "m.heroes": heroes,
            "m.joined_member_count": len(joined),
            "m.invited_member_count": len(invited),
        }

    # -- invites and leaves -------------------------------------------------------------

    def _invited_room(self, ctx: SyncContext, room_id: str, invite: Event) -> None:
        stripped = invite.raw.get("unsigned", {}).get("invite_room_state", [])
        events = [e for e in stripped if isinstance(e, dict)]
        events.append(
            {
                "type": MEMBER,
                "state_key": invite.state_key,
                "sender": invite.sender,
                "content": dict(invite.content),
            }
        )
        ctx.response.setdefault("rooms", {}).setdefault("invite", {})[room_id] = {
            "invite_state": {"events": events}
        }

    async def _left_room(
        self,
        ctx: SyncContext,
        room_id: str,
        leave: StoredEvent,
        own: list[tuple[str, dict[str, Any]]],
    ) -> None:
        rf = ctx.filter.room
        after = None if ctx.since is None else ctx.since_position("events")
        timeline, limited = await self._timeline(
            room_id, rf, after=after, upto=leave.stream_ordering
        )
        fields = ctx.filter.event_fields
        ctx.response.setdefault("rooms", {}).setdefault("leave", {})[room_id] = {
            "timeline": {
                "events": [_client(s.event, fields, ctx.user_id, own) for s in timeline],
                "limited": limited,
                "prev_batch": pagination_token(
                    (timeline[0].stream_ordering - 1) if timeline else leave.stream_ordering
                ),
            },
            "state": {"events": []},
        }


def _client(
    event: Event,
    fields: tuple[str, ...] | None,
    user_id: str | None = None,
    own: list[tuple[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    out = to_client_event(event, include_room_id=False)
    if own is not None and event.sender == user_id:
        # Filled in later; an ``event_fields`` filter keeping "unsigned" keeps this dict.
        own.append((event.event_id, out["unsigned"]))
    return apply_event_fields(out, fields)


async def add_transaction_ids(
    events: EventStore, user_id: str, device_id: str, own: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Set ``unsigned.transaction_id`` on the served events that ``device_id`` sent.

    Spec: client-server "Transaction identifiers": the client's transaction ID goes in
    unsigned, for the device that sent the event only. ``own`` pairs event IDs (sent by
    ``user_id``) with their served ``unsigned`` objects; one batched lookup for all.
    """
    if not own or not device_id:
        return
    txns = await events.get_txn_ids(user_id, device_id, (eid for eid, _ in own))
    for event_id, unsigned in own:
        txn_id = txns.get(event_id)
        if txn_id is not None:
            unsigned["transaction_id"] = txn_id


def _has_content(response: dict[str, Any]) -> bool:
    """Does a response carry anything a client would act on?"""
    for key, value in response.items():
        if key == "rooms":
            if any(value.get(k) for k in ("join", "invite", "leave", "knock")):
                return True
        elif key == "device_one_time_keys_count" or key == "device_unused_fallback_key_types":
            continue  # always present for E2EE clients; not news by themselves
        elif isinstance(value, dict):
            if any(v for v in value.values()):
                return True
        elif value:
            return True
    return False
