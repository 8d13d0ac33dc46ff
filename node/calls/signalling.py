"""Call signalling as a pure state machine: one call from one side (:class:`CallSession`);
one user's calls across rooms are node/calls/router.py's.

Spec: content/client-server-api/modules/voip_events.md: "Party Identifiers" (our echo is
the event with our ``(user_id, party_id)``), "Call Event Liveness" (``lifetime`` and
``age``), "End-of-candidates", "Invitees", "Glare", "Client behaviour", and the event
schemas (``m.call.reject`` and ``m.call.select_answer``: the caller selects one answer or
reject; a callee whose answer was not selected ends with "answered elsewhere";
``m.call.negotiate``: only the selected parties renegotiate, within ``lifetime``).

No I/O and no clock: inputs are local actions (method calls), received room events
(:meth:`CallSession.receive`) and the time (:meth:`CallSession.tick`); every input returns
a list of :class:`CallOutput` (events to send, SDP for the media side, what to show).
Nothing raises on a peer's input: an event that is malformed or does not apply yields
:class:`Ignored` with a reason to log.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from node.calls import events as ev
from node.calls.events import CallEvent, Candidate, Description, MalformedCallEvent, parse_event

# Reasons of Ended besides the spec's hangup reasons (ev.HANGUP_REASONS).
REJECTED = "rejected"  # the callee rejected (m.call.reject)
ANSWERED_ELSEWHERE = "answered_elsewhere"  # the caller selected another party
REJECTED_ELSEWHERE = "rejected_elsewhere"  # another device of ours rejected it
REPLACED = "replaced"  # glare: the other call of the pair survives
INVITE_TIMEOUT = "invite_timeout"

# Ended sessions are kept this long so late events for them are recognised and ignored.
FORGET_AFTER_MS = 300_000
MAX_BUFFERED_CANDIDATES = 1_000


class CallState(enum.StrEnum):
    IDLE = "idle"  # created, nothing placed or received yet
    INVITE_SENT = "invite_sent"  # caller: waiting for an answer or a reject
    RINGING = "ringing"  # callee: the user may answer or reject
    CONNECTING = "connecting"  # callee: answered, waiting for the caller's select_answer
    CONNECTED = "connected"  # an answer was selected; media may flow
    ENDED = "ended"


# -- outputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallOutput:
    call_id: str


@dataclass(frozen=True, slots=True)
class Send(CallOutput):
    """Send this event to the room (PUT /rooms/{room_id}/send/{event_type}/{txn})."""

    room_id: str
    event_type: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ringing(CallOutput):
    """An incoming call the user may answer or reject until ``expires_at_ms``."""

    room_id: str
    caller: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class RemoteOffer(CallOutput):
    sdp: str


@dataclass(frozen=True, slots=True)
class RemoteAnswer(CallOutput):
    sdp: str


@dataclass(frozen=True, slots=True)
class RemoteCandidates(CallOutput):
    """Candidates for the remote description; ``done``: end-of-candidates was received."""

    candidates: tuple[Candidate, ...]
    done: bool


@dataclass(frozen=True, slots=True)
class RemoteNegotiate(CallOutput):
    """An offer to answer with :meth:`CallSession.answer_negotiation`, or that answer."""

    description: Description


@dataclass(frozen=True, slots=True)
class Connected(CallOutput):
    """The caller selected an answer (ours, when we are the callee)."""


@dataclass(frozen=True, slots=True)
class Ended(CallOutput):
    """The call is over; ``by_us``: our user ended it (here, or by rejecting elsewhere)."""

    reason: str
    by_us: bool


@dataclass(frozen=True, slots=True)
class Replaced(CallOutput):
    """Glare: answer call ``call_id`` on the user's behalf; it replaces ``old_call_id``
    (our outbound call, ended as "replaced", whose local media should move to this one)."""

    old_call_id: str | None


@dataclass(frozen=True, slots=True)
class Ignored(CallOutput):
    """An input that changed nothing, with the reason to log."""

    reason: str


# -- one call ---------------------------------------------------------------------------


class CallSession:
    """One call seen from one side (one device of ``user_id``, as ``party_id``)."""

    def __init__(self, room_id: str, user_id: str, call_id: str, party_id: str) -> None:
        self.room_id = room_id
        self.user_id = user_id
        self.call_id = call_id
        self.party_id = party_id
        self.state = CallState.IDLE
        self.direction: Literal["outbound", "inbound"] | None = None
        self.invitee: str | None = None
        self.peer_user_id: str | None = None
        self.peer_party_id: str | None = None
        self.expires_at_ms: int | None = None  # the invite's end of life
        self.end_reason: str | None = None
        # Caller only: candidates of callee parties that have not answered yet.
        self._early: dict[tuple[str, str], list[Candidate]] = {}

    @property
    def live(self) -> bool:
        return self.state not in (CallState.IDLE, CallState.ENDED)

    @property
    def polite(self) -> bool:
        """The callee (also after glare) is the polite party (spec: "Politeness")."""
        return self.direction == "inbound"

    # -- local actions ------------------------------------------------------------------

    def place(
        self, offer_sdp: str, lifetime_ms: int, now_ms: int, invitee: str | None = None
    ) -> list[CallOutput]:
        """Send the invite ("Client behaviour": the caller places the call)."""
        if self.state is not CallState.IDLE:
            return self._ignored("place: the call was already placed or received")
        content = ev.invite_content(self.call_id, self.party_id, offer_sdp, lifetime_ms, invitee)
        self.direction, self.invitee, self.peer_user_id = "outbound", invitee, invitee
        self.state = CallState.INVITE_SENT
        self.expires_at_ms = now_ms + lifetime_ms
        return [self._send(ev.INVITE, content)]

    def answer(self, answer_sdp: str) -> list[CallOutput]:
        if self.state is not CallState.RINGING:
            return self._ignored(f"answer: the call is {self.state}")
        self.state = CallState.CONNECTING
        return [self._send(ev.ANSWER, ev.answer_content(self.call_id, self.party_id, answer_sdp))]

    def reject(self) -> list[CallOutput]:
        """m.call.reject: stop the call ringing on all the user's devices."""
        if self.state is not CallState.RINGING:
            return self._ignored(f"reject: the call is {self.state}")
        sent = self._send(ev.REJECT, ev.reject_content(self.call_id, self.party_id))
        return [sent, *self._end(REJECTED, by_us=True)]

    def hangup(self, reason: str = "user_hangup") -> list[CallOutput]:
        """End the call; while it rings (not answered yet) this is a reject."""
        if self.state is CallState.RINGING:
            return self.reject()
        if not self.live:
            return self._ignored(f"hangup: the call is {self.state}")
        sent = self._send(ev.HANGUP, ev.hangup_content(self.call_id, self.party_id, reason))
        return [sent, *self._end(reason, by_us=True)]

    def local_candidates(self, candidates: list[Candidate], done: bool = False) -> list[CallOutput]:
        """Trickle our ICE candidates; ``done`` adds end-of-candidates."""
        if self.state not in (CallState.INVITE_SENT, CallState.CONNECTING, CallState.CONNECTED):
            return self._ignored(f"candidates: the call is {self.state}")
        if not candidates and not done:
            return []
        content = ev.candidates_content(self.call_id, self.party_id, candidates, done)
        return [self._send(ev.CANDIDATES, content)]

    def renegotiate(
        self, offer_sdp: str, lifetime_ms: int = ev.DEFAULT_NEGOTIATE_LIFETIME_MS
    ) -> list[CallOutput]:
        return self._negotiate(Description("offer", offer_sdp), lifetime_ms)

    def answer_negotiation(self, answer_sdp: str) -> list[CallOutput]:
        return self._negotiate(Description("answer", answer_sdp), ev.DEFAULT_NEGOTIATE_LIFETIME_MS)

    def _negotiate(self, description: Description, lifetime_ms: int) -> list[CallOutput]:
        if self.state is not CallState.CONNECTED:
            return self._ignored(f"negotiate: the call is {self.state}")
        content = ev.negotiate_content(self.call_id, self.party_id, description, lifetime_ms)
        return [self._send(ev.NEGOTIATE, content)]

    # -- time ---------------------------------------------------------------------------

    def tick(self, now_ms: int) -> list[CallOutput]:
        """An invite nobody answered within its lifetime ends the call ("Call Event Liveness")."""
        if self.expires_at_ms is None or now_ms < self.expires_at_ms:
            return []
        if self.state is CallState.INVITE_SENT:
            content = ev.hangup_content(self.call_id, self.party_id, "invite_timeout")
            sent = self._send(ev.HANGUP, content)
            return [sent, *self._end(INVITE_TIMEOUT, by_us=True)]
        if self.state is CallState.RINGING:
            return self._end(INVITE_TIMEOUT, by_us=False)
        return []

    def peer_left(self, user_id: str) -> list[CallOutput]:
        """The peer leaving the room is a hangup (spec: "Behaviour on Room Leave")."""
        if self.live and user_id == self.peer_user_id:
            return self._end("user_hangup", by_us=False)
        return []

    # -- received events ----------------------------------------------------------------

    def receive(self, event: Any, now_ms: int) -> list[CallOutput]:
        """A room event (type, sender, content, origin_server_ts, unsigned.age)."""
        try:
            parsed = parse_event(event, now_ms)
        except MalformedCallEvent as e:
            return [Ignored(ev.call_id_of(event) or self.call_id, f"malformed: {e}")]
        return self.handle(parsed, now_ms)

    def handle(self, e: CallEvent, now_ms: int) -> list[CallOutput]:
        """A checked received event."""
        if e.content.call_id != self.call_id:
            return self._ignored("event of another call")
        if e.sender == self.user_id and e.content.party_id == self.party_id:
            return self._ignored("our own echo")
        if self.state is CallState.ENDED:
            return self._ignored(f"{e.type} after the call ended")
        return self._HANDLERS[e.type](self, e, now_ms)

    def _from_peer(self, e: CallEvent) -> bool:
        return (e.sender, e.content.party_id) == (self.peer_user_id, self.peer_party_id)

    def _on_invite(self, e: CallEvent, now_ms: int) -> list[CallOutput]:
        invite = e.content
        assert isinstance(invite, ev.Invite)
        if self.state is not CallState.IDLE:
            return self._ignored("a second invite for this call")
        if invite.invitee is not None and invite.invitee != self.user_id:
            return self._ignored(f"invite for {invite.invitee}")
        if invite.invitee is None and e.sender == self.user_id:
            return self._ignored("invite from our own user to the room")  # "Invitees"
        if e.age_ms >= invite.lifetime:
            return self._ignored(f"stale invite: {e.age_ms} ms old, lifetime {invite.lifetime}")
        self.direction, self.state = "inbound", CallState.RINGING
        self.peer_user_id, self.peer_party_id = e.sender, invite.party_id
        self.expires_at_ms = now_ms + invite.lifetime - e.age_ms
        return [
            RemoteOffer(self.call_id, invite.offer.sdp),
            Ringing(self.call_id, self.room_id, e.sender, self.expires_at_ms),
        ]

    def _on_answer(self, e: CallEvent, now_ms: int) -> list[CallOutput]:
        answer = e.content
        assert isinstance(answer, ev.Answer)
        if self.direction == "inbound":
            if self.state is CallState.RINGING and e.sender == self.user_id:
                return self._end(ANSWERED_ELSEWHERE, by_us=False)  # our other device answered
            return self._ignored("answer from another callee")
        if self.state is not CallState.INVITE_SENT:
            return self._ignored("answer after another answer was selected")
        if self.invitee is not None and e.sender != self.invitee:
            return self._ignored(f"answer from {e.sender}, who was not invited")
        self.peer_user_id, self.peer_party_id = e.sender, answer.party_id
        self.state = CallState.CONNECTED
        select = ev.select_answer_content(self.call_id, self.party_id, answer.party_id)
        early = self._early.pop((e.sender, answer.party_id), [])
        self._early.clear()
        out: list[CallOutput] = [
            self._send(ev.SELECT_ANSWER, select),
            RemoteAnswer(self.call_id, answer.answer.sdp),
        ]
        if early:
            out.append(self._remote_candidates(early))
        out.append(Connected(self.call_id))
        return out

    def _on_reject(self, e: CallEvent, now_ms: int) -> list[CallOutput]:
        if self.direction == "inbound":
            if self.state is CallState.RINGING and e.sender == self.user_id:
                return self._end(REJECTED_ELSEWHERE, by_us=True)
            return self._ignored("reject from another callee")
        if self.state is not CallState.INVITE_SENT:
            return self._ignored("reject after an answer was selected")
        if self.invitee is not None and e.sender != self.invitee:
            return self._ignored(f"reject from {e.sender}, who was not invited")
        # m.call.reject: "the caller sends a select_answer for it just like an answer".
        select = ev.select_answer_content(self.call_id, self.party_id, e.content.party_id)
        return [self._send(ev.SELECT_ANSWER, select), *self._end(REJECTED, by_us=False)]

    def _on_select_answer(self, e: CallEvent, now_ms: int) -> list[CallOutput]:
        select = e.content
        assert isinstance(select, ev.SelectAnswer)
        if self.direction != "inbound" or not self._from_peer(e):
            return self._ignored("select_answer not from our caller")
        if select.selected_party_id != self.party_id:
            return self._end(ANSWERED_ELSEWHERE, by_us=False)
        if self.state is not CallState.CONNECTING:
            return self._ignored(f"select_answer of our party while {self.state}")
        self.state = CallState.CONNECTED
        return [Connected(self.call_id)]

    def _on_candidates(self, e: CallEvent, now_ms: int) -> list[CallOutput]:
        cands = e.content
        assert isinstance(cands, ev.Candidates)
        if self._from_peer(e):
            return [self._remote_candidates(list(cands.candidates))]
        if self.direction == "outbound" and self.state is CallState.INVITE_SENT:
            # Kept until this party's answer gives us its remote description.
            kept = sum(map(len, self._early.values()))
            if kept + len(cands.candidates) > MAX_BUFFERED_CANDIDATES:
                return self._ignored("too many candidates before an answer")
            self._early.setdefault((e.sender, cands.party_id), []).extend(cands.candidates)
            return []
        return self._ignored("candidates from a party not in the call")

    def _on_negotiate(self, e: CallEvent, now_ms: int) -> list[CallOutput]:
        negotiate = e.content
        assert isinstance(negotiate, ev.Negotiate)
        if not self._from_peer(e):
            return self._ignored("negotiate from a party not in the call")
        if self.state is not CallState.CONNECTED:
            return self._ignored(f"negotiate while {self.state}")
        if e.age_ms >= negotiate.lifetime:
            return self._ignored(f"stale negotiate: {e.age_ms} ms old")
        return [RemoteNegotiate(self.call_id, negotiate.description)]

    def _on_hangup(self, e: CallEvent, now_ms: int) -> list[CallOutput]:
        hangup = e.content
        assert isinstance(hangup, ev.Hangup)
        if not self._from_peer(e):
            return self._ignored("hangup from a party not in the call")
        return self._end(hangup.reason, by_us=False)

    _HANDLERS: ClassVar[dict[str, Callable[[CallSession, CallEvent, int], list[CallOutput]]]] = {
        ev.INVITE: _on_invite,
        ev.ANSWER: _on_answer,
        ev.REJECT: _on_reject,
        ev.SELECT_ANSWER: _on_select_answer,
        ev.CANDIDATES: _on_candidates,
        ev.NEGOTIATE: _on_negotiate,
        ev.HANGUP: _on_hangup,
    }

    # -- helpers ------------------------------------------------------------------------

    def _send(self, event_type: str, content: dict[str, Any]) -> Send:
        return Send(self.call_id, self.room_id, event_type, content)

    def _ignored(self, reason: str) -> list[CallOutput]:
        return [Ignored(self.call_id, reason)]

    def _remote_candidates(self, candidates: list[Candidate]) -> RemoteCandidates:
        real = tuple(c for c in candidates if not c.is_end)
        return RemoteCandidates(self.call_id, real, len(real) < len(candidates))

    def _end(self, reason: str, by_us: bool) -> list[CallOutput]:
        self.state, self.end_reason = CallState.ENDED, reason
        self._early.clear()
        return [Ended(self.call_id, reason, by_us)]
