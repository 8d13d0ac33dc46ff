"""One user's calls across rooms (:class:`CallRouter`): routes received m.call.* events
to their :class:`~node.calls.signalling.CallSession` by ``call_id``, makes the session of
a fresh invite, and settles glare.

Spec: content/client-server-api/modules/voip_events.md, "Glare" (the call with the
lexicographically lesser ``call_id`` survives; a call placed while one rings in the same
room answers that one instead), "Call Event Liveness", and "Client behaviour" (an invite
ended within the same sync never rings). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from node.calls import events as ev
from node.calls.events import MalformedCallEvent, parse_event
from node.calls.signalling import (
    FORGET_AFTER_MS,
    REPLACED,
    CallOutput,
    CallSession,
    CallState,
    Ignored,
    RemoteOffer,
    Replaced,
    Ringing,
)


class CallRouter:
    """The calls of one user (one device) across rooms, keyed by ``call_id``."""

    def __init__(
        self,
        user_id: str,
        *,
        new_id: Callable[[int], str] = ev.new_id,
        forget_after_ms: int = FORGET_AFTER_MS,
    ) -> None:
        self.user_id = user_id
        self._new_id = new_id
        self._forget_after_ms = forget_after_ms
        self._sessions: dict[str, CallSession] = {}
        self._forget_at: dict[str, int] = {}

    def session(self, call_id: str) -> CallSession | None:
        return self._sessions.get(call_id)

    def sessions(self) -> list[CallSession]:
        return list(self._sessions.values())

    def ringing_in(self, room_id: str) -> CallSession | None:
        """The incoming call ringing in ``room_id``, if any."""
        for s in self._sessions.values():
            if s.room_id == room_id and s.state is CallState.RINGING:
                return s
        return None

    def place(
        self,
        room_id: str,
        offer_sdp: str,
        lifetime_ms: int,
        now_ms: int,
        invitee: str | None = None,
    ) -> tuple[str, list[CallOutput]]:
        """Call ``room_id``; returns the call_id of the call to follow and the outputs.

        "Glare", first case: if an invite to this room is already ringing while we
        prepare ours, ours is cancelled and the incoming call is answered instead:
        the outputs are then just :class:`Replaced` for it (the caller answers it).
        """
        ringing = self.ringing_in(room_id)
        if ringing is not None:
            return ringing.call_id, [Replaced(ringing.call_id, None)]
        call_id = self._new_id(16)
        while call_id in self._sessions:
            call_id = self._new_id(16)
        session = CallSession(room_id, self.user_id, call_id, self._new_id(8))
        self._sessions[call_id] = session
        return call_id, session.place(offer_sdp, lifetime_ms, now_ms, invitee)

    def on_event(self, room_id: str, event: Any, now_ms: int) -> list[CallOutput]:
        """Route a room event to its call; a fresh invite makes an incoming call."""
        try:
            parsed = parse_event(event, now_ms)
        except MalformedCallEvent as e:
            return [Ignored(ev.call_id_of(event), f"malformed: {e}")]
        call_id = parsed.content.call_id
        session = self._sessions.get(call_id)
        if session is not None:
            if session.room_id != room_id:
                return [Ignored(call_id, f"event of this call in another room {room_id}")]
            return session.handle(parsed, now_ms)
        if parsed.type != ev.INVITE:
            return [Ignored(call_id, f"{parsed.type} of an unknown call")]
        session = CallSession(room_id, self.user_id, call_id, self._new_id(8))
        outputs = session.handle(parsed, now_ms)
        if session.state is not CallState.RINGING:
            return outputs
        self._sessions[call_id] = session
        ours = next(
            (
                s
                for s in self._sessions.values()
                if s.room_id == room_id and s.state is CallState.INVITE_SENT
            ),
            None,
        )
        if ours is None:
            return outputs
        # "Glare", second case: we have sent an invite to this room and wait for an
        # answer. The lesser call_id survives; the other is aborted on both sides.
        if call_id < ours.call_id:
            ended = ours._end(REPLACED, by_us=True)
            offer = [o for o in outputs if isinstance(o, RemoteOffer)]
            return [*ended, *offer, Replaced(call_id, ours.call_id)]
        session._end(REPLACED, by_us=False)
        return [Ignored(call_id, f"glare: our call {ours.call_id} is kept, this one dropped")]

    def on_events(self, room_id: str, events: list[Any], now_ms: int) -> list[CallOutput]:
        """The call events of one room from one sync response, in timeline order.

        "Call Event Liveness": an incoming call is signalled only after the whole
        response is processed, so an invite already hung up, rejected or answered
        elsewhere within it never rings: its outputs collapse to one Ignored.
        """
        outputs = [o for e in events for o in self.on_event(room_id, e, now_ms)]
        rang = {o.call_id for o in outputs if isinstance(o, Ringing)}
        gone = {c for c in rang if self._sessions[c].state is not CallState.RINGING}
        if not gone:
            return outputs
        kept = [o for o in outputs if o.call_id not in gone]
        return kept + [Ignored(c, "invite ended within the same sync") for c in sorted(gone)]

    def peer_left(self, room_id: str, user_id: str) -> list[CallOutput]:
        """A member left ``room_id``: calls with them end ("Behaviour on Room Leave")."""
        out: list[CallOutput] = []
        for s in self._sessions.values():
            if s.room_id == room_id:
                out += s.peer_left(user_id)
        return out

    def tick(self, now_ms: int) -> list[CallOutput]:
        """Time out invites; forget calls ended more than ``forget_after_ms`` ago."""
        out: list[CallOutput] = []
        for s in list(self._sessions.values()):
            out += s.tick(now_ms)
            if s.state is CallState.ENDED:
                forget_at = self._forget_at.setdefault(s.call_id, now_ms + self._forget_after_ms)
                if now_ms >= forget_at:
                    del self._sessions[s.call_id], self._forget_at[s.call_id]
        return out
