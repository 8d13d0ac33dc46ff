"""Typing notifications, kept in memory.

Spec: content/client-server-api/modules/typing_notifications.md and
api/client-server/typing.yaml (PUT /rooms/{roomId}/typing/{userId}: typing for the next
``timeout`` ms, or stopped); event-schemas m.typing (``user_ids``: everyone typing in
the room, which replaces what the client knew). The server "does not remember users
who are not currently typing": a user stops typing at the timeout, when they say so,
when they send an event into the room (as Synapse does), or when they leave it.

Every change to a room's list of typers moves the ``typing`` sync stream and records
the position against the room, so /sync can send the room's list when it changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from node.ephemeral.streams import MemoryStream
from node.events.pdu import MEMBER, Event, StateKey
from node.sync.notifier import Notifier

STREAM = "typing"
DEFAULT_TIMEOUT_MS = 30_000
# Not in the spec (Synapse's bound): a client refreshes well before this anyway.
MAX_TIMEOUT_MS = 120_000


class TypingService:
    def __init__(self, notifier: Notifier) -> None:
        self.stream = MemoryStream(STREAM, notifier)
        # Called with (room, user, typing) on every set_typing(typing=True) and when a
        # user stops typing; the federation side sends local users' changes on.
        self.on_change: list[Callable[[str, str, bool], None]] = []
        # room -> user -> the timer that ends their typing
        self._typing: dict[str, dict[str, asyncio.TimerHandle]] = {}
        # room -> position of the last change to its typers
        self._changed_at: dict[str, int] = {}

    def set_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        """Start (or keep) ``user_id`` typing for ``timeout_ms``, or stop it."""
        users = self._typing.get(room_id, {})
        old = users.get(user_id)
        if old is not None:
            old.cancel()
        if not typing:
            if old is not None:
                self._remove(room_id, user_id)
            return
        timeout_s = min(max(timeout_ms, 0), MAX_TIMEOUT_MS) / 1000
        handle = asyncio.get_running_loop().call_later(timeout_s, self._remove, room_id, user_id)
        self._typing.setdefault(room_id, {})[user_id] = handle
        if old is None:
            self._changed(room_id)  # a refresh of someone already typing is no news
        for hook in self.on_change:
            hook(room_id, user_id, True)  # other servers time typing out themselves

    def _remove(self, room_id: str, user_id: str) -> None:
        users = self._typing.get(room_id)
        if users is None or users.pop(user_id, None) is None:
            return
        if not users:
            del self._typing[room_id]
        self._changed(room_id)
        for hook in self.on_change:
            hook(room_id, user_id, False)

    def _changed(self, room_id: str) -> None:
        position = self.stream.next_position()
        self._changed_at[room_id] = position
        self.stream.notify(position)

    def typers(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, ()))

    def rooms_with_typers(self) -> list[str]:
        return list(self._typing)

    def changed_rooms(self, after: int, upto: int) -> list[str]:
        """The rooms whose typers changed in (after, upto]."""
        return [r for r, pos in self._changed_at.items() if after < pos <= upto]

    async def on_event(self, event: Event, room_state: Mapping[StateKey, Event]) -> None:
        """RoomService.on_persisted: sending an event ends the sender's typing, and a
        member who is no longer joined is not typing."""
        self._stop(event.room_id, event.sender)
        if event.type == MEMBER and event.state_key and event.membership != "join":
            self._stop(event.room_id, event.state_key)

    def _stop(self, room_id: str, user_id: str) -> None:
        handle = self._typing.get(room_id, {}).get(user_id)
        if handle is not None:
            handle.cancel()
            self._remove(room_id, user_id)

    def close(self) -> None:
        for users in self._typing.values():
            for handle in users.values():
                handle.cancel()
        self._typing.clear()
