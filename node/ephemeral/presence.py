"""Presence, kept in memory.

Spec: content/client-server-api/modules/presence.md and api/client-server/presence.yaml
(GET/PUT /presence/{userId}/status); event-schemas m.presence; sync.yaml
``set_presence``.

- States: ``online``, ``unavailable`` (idle), ``offline`` (not connected).
- "Last active ago": the server keeps the time of the user's last pro-active event
  (sending an event, a receipt, setting ``online``); ``last_active_ago`` is computed
  when an event or response is made, so it is always up to date.
- ``currently_active`` (optional in the spec) is true while online and active in the
  last minute; going false is sent as an update, as the spec requires.
- "Idle timeout": online with no activity for 5 minutes becomes ``unavailable``; any
  activity makes the user ``online`` again.
- A /sync with ``set_presence=online`` (the default) brings an offline user online,
  ``unavailable`` marks them idle, ``offline`` changes nothing. A user with no /sync
  (or PUT) for 30 seconds after the last one ended goes ``offline`` (as Synapse does).

The transitions are pure functions of (state, now) so they test from tables; the
:class:`PresenceService` keeps one state per user, a timer for the next due
transition, and moves the ``presence`` sync stream when what clients see changes.

Disabled presence (``[presence] enabled = false``, the small profiles): the spec does
not describe a server without presence. As Synapse does, PUT is still validated
(403 for another user, 400 for a bad body) and answered 200 but changes nothing, GET
answers ``{"presence": "offline"}``, /sync carries no presence and ``set_presence`` is
ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from node.ephemeral.streams import MemoryStream
from node.events.pdu import Event, StateKey
from node.rooms.auth_common import server_of
from node.storage.accounts import now_ms
from node.storage.events import EventStore
from node.sync.notifier import Notifier
from node.sync.service import MAX_TIMEOUT_MS

STREAM = "presence"
ONLINE, UNAVAILABLE, OFFLINE = "online", "unavailable", "offline"
PRESENCE_STATES = (ONLINE, UNAVAILABLE, OFFLINE)
IDLE_MS = 5 * 60_000
ACTIVE_MS = 60_000
SYNC_GRACE_MS = 30_000


@dataclass(frozen=True, slots=True)
class PresenceState:
    presence: str = OFFLINE
    status_msg: str | None = None
    last_active_ts: int = 0  # ms; 0: never seen active
    currently_active: bool = False
    connected_until: int = 0  # ms; a client synced (or set presence) until then


# -- the transitions (pure) ------------------------------------------------------------


def on_put(state: PresenceState, presence: str, status_msg: str | None, now: int) -> PresenceState:
    """PUT /presence/{userId}/status: setting ``online`` is activity."""
    new = replace(
        state,
        presence=presence,
        status_msg=status_msg,
        connected_until=max(state.connected_until, now + SYNC_GRACE_MS),
    )
    if presence == ONLINE:
        return replace(new, last_active_ts=now, currently_active=True)
    return replace(new, currently_active=False)


def on_sync(state: PresenceState, set_presence: str, now: int, timeout_ms: int) -> PresenceState:
    """A /sync with ``set_presence`` that waits up to ``timeout_ms``."""
    if set_presence == OFFLINE:
        return state
    waits = min(max(timeout_ms, 0), MAX_TIMEOUT_MS)
    new = replace(state, connected_until=max(state.connected_until, now + waits + SYNC_GRACE_MS))
    if set_presence == ONLINE and state.presence == OFFLINE:
        return replace(new, presence=ONLINE, last_active_ts=now, currently_active=True)
    if set_presence == UNAVAILABLE and state.presence != UNAVAILABLE:
        return replace(new, presence=UNAVAILABLE, currently_active=False)
    return new


def on_activity(state: PresenceState, now: int) -> PresenceState:
    """A pro-active event: the user is online and currently active."""
    return replace(
        state,
        presence=ONLINE,
        last_active_ts=now,
        currently_active=True,
        connected_until=max(state.connected_until, now + SYNC_GRACE_MS),
    )


def on_timer(state: PresenceState, now: int) -> PresenceState:
    """The transition due at ``now``, if any: offline, idle, or no longer active."""
    if state.presence != OFFLINE and now >= state.connected_until:
        return replace(state, presence=OFFLINE, currently_active=False)
    if state.presence == ONLINE and now - state.last_active_ts >= IDLE_MS:
        return replace(state, presence=UNAVAILABLE, currently_active=False)
    if (
        state.presence == ONLINE
        and state.currently_active
        and now - state.last_active_ts >= ACTIVE_MS
    ):
        return replace(state, currently_active=False)
    return state


def next_deadline(state: PresenceState) -> int | None:
    """When :func:`on_timer` may next change the state (ms), or None."""
    if state.presence == OFFLINE:
        return None
    due = [state.connected_until]
    if state.presence == ONLINE:
        due.append(state.last_active_ts + IDLE_MS)
        if state.currently_active:
            due.append(state.last_active_ts + ACTIVE_MS)
    return min(due)


def visibly_changed(old: PresenceState, new: PresenceState) -> bool:
    """Would clients see the change (last_active_ago alone is not news)?"""
    return (old.presence, old.status_msg, old.currently_active) != (
        new.presence,
        new.status_msg,
        new.currently_active,
    )


def presence_content(state: PresenceState, now: int) -> dict[str, Any]:
    """The content of an m.presence event, and the GET response."""
    content: dict[str, Any] = {"presence": state.presence}
    if state.last_active_ts:
        content["last_active_ago"] = max(0, now - state.last_active_ts)
    if state.presence == ONLINE:
        content["currently_active"] = state.currently_active
    if state.status_msg is not None:
        content["status_msg"] = state.status_msg
    return content


# -- the service --------------------------------------------------------------------------


class PresenceService:
    def __init__(
        self, enabled: bool, notifier: Notifier, events: EventStore, server_name: str
    ) -> None:
        self.enabled = enabled
        self.events = events
        self.server_name = server_name
        self.stream = MemoryStream(STREAM, notifier)
        self._states: dict[str, PresenceState] = {}
        self._changed_at: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Called with the user ID when a local user's presence changed visibly (the
        # federation side sends it to the servers sharing a room with the user).
        self.on_change: list[Callable[[str], None]] = []

    def state(self, user_id: str) -> PresenceState:
        return self._states.get(user_id, PresenceState())

    def content(self, user_id: str) -> dict[str, Any]:
        """What GET /presence/{userId}/status answers (when presence is enabled)."""
        return presence_content(self.state(user_id), now_ms())

    def set_presence(self, user_id: str, presence: str, status_msg: str | None) -> None:
        if self.enabled:
            self._update(user_id, on_put(self.state(user_id), presence, status_msg, now_ms()))

    def syncing(self, user_id: str, set_presence: str, timeout_ms: int) -> None:
        if self.enabled:
            state = on_sync(self.state(user_id), set_presence, now_ms(), timeout_ms)
            self._update(user_id, state)

    def activity(self, user_id: str) -> None:
        if self.enabled and self._is_local(user_id):
            self._update(user_id, on_activity(self.state(user_id), now_ms()))

    def set_remote(
        self,
        user_id: str,
        presence: str,
        status_msg: str | None,
        last_active_ago: int,
        currently_active: bool,
    ) -> None:
        """The presence of a user on another server (an m.presence EDU): kept as sent,
        with no timers (their server sends the next change)."""
        if not self.enabled or self._is_local(user_id):
            return
        now = now_ms()
        state = PresenceState(
            presence=presence,
            status_msg=status_msg,
            last_active_ts=now - max(0, last_active_ago),
            currently_active=currently_active and presence == ONLINE,
        )
        self._update(user_id, state)

    async def on_event(self, event: Event, room_state: Mapping[StateKey, Event]) -> None:
        """RoomService.on_persisted: sending an event is activity."""
        self.activity(event.sender)

    def changed_users(self, after: int, upto: int) -> list[str]:
        """Users whose presence changed in (after, upto]."""
        changed = [(pos, u) for u, pos in self._changed_at.items() if after < pos <= upto]
        return [u for _, u in sorted(changed)]

    async def can_see(self, observer: str, user_id: str) -> bool:
        """presence.md "Security considerations": presence is for users sharing a room."""
        if observer == user_id:
            return True
        mine = set(await self.events.get_rooms_with_member(observer, "join"))
        return not mine.isdisjoint(await self.events.get_rooms_with_member(user_id, "join"))

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -- internals ---------------------------------------------------------------------

    def _is_local(self, user_id: str) -> bool:
        return server_of(user_id) == self.server_name

    def _update(self, user_id: str, new: PresenceState) -> None:
        old = self.state(user_id)
        self._states[user_id] = new
        if self._is_local(user_id):
            self._schedule(user_id, new)
        if visibly_changed(old, new):
            position = self.stream.next_position()
            self._changed_at[user_id] = position
            self.stream.notify(position)
            if self._is_local(user_id):
                for hook in self.on_change:
                    hook(user_id)

    def _schedule(self, user_id: str, state: PresenceState) -> None:
        """Arrange for :meth:`_fire` at the state's next deadline. A timer already due
        no later is kept (each sent event is activity; rescheduling every time would
        be churn): firing early is harmless, on_timer changes nothing before a
        deadline and the timer is set again from there."""
        due = next_deadline(state)
        old = self._timers.get(user_id)
        if due is None:
            if old is not None:
                old.cancel()
                del self._timers[user_id]
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0, due - now_ms()) / 1000
        if old is not None:
            if old.when() <= when:
                return
            old.cancel()
        self._timers[user_id] = loop.call_at(when, self._fire, user_id)

    def _fire(self, user_id: str) -> None:
        self._timers.pop(user_id, None)
        self._update(user_id, on_timer(self.state(user_id), now_ms()))
