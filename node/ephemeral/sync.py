"""Typing, receipts and presence in /sync.

Spec: api/client-server/sync.yaml (``rooms.join.*.ephemeral.events``,
``presence.events``); typing_notifications.md (an ``m.typing`` event with every user
typing, sent when the room's typers changed after ``since``); receipts.md "Client
behaviour" (``m.receipt`` events are deltas; an initial sync carries them all;
``m.read.private`` only to its owner; "Server behaviour": batched into one event per
room and thread); presence.md (``m.presence`` events of the user and of the users
sharing a room with them). The filter's ``room.ephemeral`` (rooms, types, limit) and
``presence`` (types, senders, limit) EventFilters apply. A ``full_state`` sync is
treated as an initial one.

A room the user joined after ``since`` (was not joined at ``since``, is now) gets all
its current receipts in an incremental sync, as in an initial one and as Synapse does:
the deltas after ``since`` would leave out the receipts made before the user joined.
"""

from __future__ import annotations

from typing import Any

from node.ephemeral import presence, receipts, typing
from node.ephemeral.presence import PresenceService, presence_content
from node.ephemeral.receipt_store import UNTHREADED, Receipt, ReceiptStore
from node.ephemeral.typing import TypingService
from node.storage.accounts import now_ms
from node.storage.events import EventStore
from node.sync.context import SyncContext
from node.sync.filters import EventFilter


def receipt_events(found: list[Receipt], user_id: str) -> dict[str, list[dict[str, Any]]]:
    """m.receipt events per room, one per thread, leaving out others' private receipts."""
    by_room: dict[str, dict[str, dict[str, Any]]] = {}
    for r in found:
        if r.receipt_type == receipts.READ_PRIVATE and r.user_id != user_id:
            continue
        content = by_room.setdefault(r.room_id, {}).setdefault(r.thread_id, {})
        receipt: dict[str, Any] = {"ts": r.ts}
        if r.thread_id != UNTHREADED:
            receipt["thread_id"] = r.thread_id
        content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = receipt
    return {
        room_id: [{"type": "m.receipt", "content": c} for c in threads.values()]
        for room_id, threads in by_room.items()
    }


def _limited(events: list[dict[str, Any]], event_filter: EventFilter) -> list[dict[str, Any]]:
    limit = event_filter.limit
    if limit is None or len(events) <= limit:
        return events
    return events[len(events) - limit :]


class EphemeralSyncExtension:
    """The :class:`~node.sync.context.SyncExtension` for typing, receipts and presence."""

    def __init__(
        self,
        typing: TypingService,
        receipts: ReceiptStore,
        presence: PresenceService,
        events: EventStore | None = None,
    ) -> None:
        self.typing = typing
        self.receipts = receipts
        self.presence = presence
        # To find the rooms joined after ``since`` (None: not looked for).
        self.events = events

    async def add_to_sync(self, ctx: SyncContext) -> None:
        await self._rooms(ctx)
        await self._presence(ctx)

    async def _rooms(self, ctx: SyncContext) -> None:
        ef = ctx.filter.room.ephemeral
        joined = [r for r in ctx.joined_rooms if ef.allows_room(r)]
        if not joined:
            return
        initial = ctx.since is None or ctx.full_state
        events: dict[str, list[dict[str, Any]]] = {}
        # m.typing
        if initial:
            typing_rooms = set(self.typing.rooms_with_typers())
        else:
            typing_rooms = set(
                self.typing.changed_rooms(
                    ctx.since_position(typing.STREAM), ctx.upto.get(typing.STREAM)
                )
            )
        for room_id in joined:
            if room_id in typing_rooms:
                content = {"user_ids": self.typing.typers(room_id)}
                events.setdefault(room_id, []).append({"type": "m.typing", "content": content})
        # m.receipt
        upto = ctx.upto.get(receipts.STREAM)
        if initial:
            found = await self.receipts.in_rooms(joined, upto)
        else:
            newly = await self._newly_joined(ctx, joined)
            found = await self.receipts.in_rooms(newly, upto) if newly else []
            if ctx.since_position(receipts.STREAM) < upto:
                rooms = set(joined) - newly
                changed = await self.receipts.changes(ctx.since_position(receipts.STREAM), upto)
                found += [r for r in changed if r.room_id in rooms]
        for room_id, room_receipts in receipt_events(found, ctx.user_id).items():
            events.setdefault(room_id, []).extend(room_receipts)
        for room_id, room_events in events.items():
            kept = _limited([e for e in room_events if ef.allows(e)], ef)
            if kept:
                section = ctx.joined_room(room_id).setdefault("ephemeral", {})
                section.setdefault("events", []).extend(kept)

    async def _newly_joined(self, ctx: SyncContext, joined: list[str]) -> set[str]:
        """Of the ``joined`` rooms, those the user was not joined to at ``since``: the
        user's membership changed after ``since`` and was not ``join`` at it."""
        after, upto = ctx.since_position("events"), ctx.upto.get("events")
        if self.events is None or after >= upto:
            return set()
        changed = ctx.membership_changes
        if changed is None:
            changed = await self.events.get_membership_changes(ctx.user_id, after, upto)
        candidates = [r for r in joined if r in changed]
        if not candidates:
            return set()
        before = await self.events.get_membership_changes(ctx.user_id, 0, after)
        return {r for r in candidates if r not in before or before[r].event.membership != "join"}

    async def _presence(self, ctx: SyncContext) -> None:
        if not self.presence.enabled:
            return
        upto = ctx.upto.get(presence.STREAM)
        after = 0 if ctx.since is None or ctx.full_state else ctx.since_position(presence.STREAM)
        users = self.presence.changed_users(after, upto)
        if not users:
            return
        now = now_ms()
        found = []
        for user_id in users:
            if not await self.presence.can_see(ctx.user_id, user_id):
                continue
            content = presence_content(self.presence.state(user_id), now)
            event = {"type": "m.presence", "sender": user_id, "content": content}
            if ctx.filter.presence.allows(event):
                found.append(event)
        found = _limited(found, ctx.filter.presence)
        if found:
            ctx.section("presence").setdefault("events", []).extend(found)
