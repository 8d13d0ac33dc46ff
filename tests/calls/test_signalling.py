"""Call signalling (node/calls/signalling.py) as pure logic: whole calls between routers.

Spec: client-server-api/modules/voip_events.md ("Client behaviour", "Glare", "Call Event
Liveness", "Invitees", "Party Identifiers") and the m.call.* schemas. :class:`Net` is one
room: every event a device sends is delivered, in order, to every device of the room,
the sender included (so each side also sees its own echo, as /sync would show it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.calls import events as ev
from node.calls.events import Candidate
from node.calls.router import CallRouter
from node.calls.signalling import (
    ANSWERED_ELSEWHERE,
    INVITE_TIMEOUT,
    REJECTED,
    REJECTED_ELSEWHERE,
    REPLACED,
    CallOutput,
    CallSession,
    CallState,
    Connected,
    Ended,
    Ignored,
    RemoteAnswer,
    RemoteCandidates,
    RemoteNegotiate,
    RemoteOffer,
    Replaced,
    Ringing,
    Send,
)

ALICE, BOB, CAROL = "@alice:a.test", "@bob:b.test", "@carol:c.test"
ROOM = "!room:a.test"
LIFETIME = 60_000
HOST = Candidate("candidate:1 1 udp 2122260223 10.0.0.1 4000 typ host", "0", 0)


def room_event(send: Send, sender: str, ts: int, age: int = 0) -> dict[str, Any]:
    """A Send as the other devices see it in /sync (client format)."""
    return {
        "type": send.event_type,
        "sender": sender,
        "content": send.content,
        "origin_server_ts": ts,
        "event_id": f"$e{ts}-{id(send)}",
        "room_id": send.room_id,
        "unsigned": {"age": age},
    }


def ids(prefix: str) -> Callable[[int], str]:
    """Deterministic call_id/party_id factory: prefix + counter (glare compares them)."""
    counter = itertools.count(1)
    return lambda length: f"{prefix}{next(counter):0{max(1, length - len(prefix))}d}"


class Net:
    """One room with some devices (a CallRouter each); delivers every Send in order."""

    def __init__(self) -> None:
        self.now = 1_000
        self.routers: dict[str, CallRouter] = {}
        self.users: dict[str, str] = {}
        self.out: dict[str, list[CallOutput]] = {}
        self.sent: list[Send] = []
        self._queue: list[tuple[str, Send]] = []

    def add(self, device: str, user_id: str, prefix: str | None = None) -> CallRouter:
        router = CallRouter(user_id, new_id=ids(prefix or device.upper()))
        self.routers[device], self.users[device], self.out[device] = router, user_id, []
        return router

    def post(self, device: str, outputs: list[CallOutput]) -> list[CallOutput]:
        """Queue what ``device`` must send (its other outputs are kept in ``out``)."""
        for o in outputs:
            if isinstance(o, Send):
                self._queue.append((device, o))
            else:
                self.out[device].append(o)
        return outputs

    def run(self) -> None:
        while self._queue:
            sender, send = self._queue.pop(0)
            self.sent.append(send)
            self.now += 10
            event = room_event(send, self.users[sender], self.now)
            for device, router in self.routers.items():
                self.post(device, router.on_event(ROOM, event, self.now))

    def do(self, device: str, outputs: list[CallOutput]) -> None:
        self.post(device, outputs)
        self.run()

    def place(self, device: str, invitee: str | None = None, run: bool = True) -> str:
        call_id, outputs = self.routers[device].place(
            ROOM, f"offer from {device}", LIFETIME, self.now, invitee
        )
        self.post(device, outputs)
        if run:
            self.run()
        return call_id

    def call(self, device: str, call_id: str) -> CallSession:
        session = self.routers[device].session(call_id)
        assert session is not None, f"{device} has no call {call_id}"
        return session

    def of(self, device: str, kind: type[CallOutput]) -> list[Any]:
        return [o for o in self.out[device] if isinstance(o, kind)]

    def ignored(self, device: str) -> list[str]:
        return [o.reason for o in self.of(device, Ignored)]


def pair() -> Net:
    net = Net()
    net.add("alice", ALICE)
    net.add("bob", BOB)
    return net


def connected_call() -> tuple[Net, str]:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    net.do("bob", net.call("bob", call_id).answer("answer from bob"))
    return net, call_id


# -- whole calls ------------------------------------------------------------------------


def test_place_answer_select_connected_hangup() -> None:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    assert net.call("alice", call_id).state is CallState.INVITE_SENT
    assert net.of("bob", RemoteOffer) == [RemoteOffer(call_id, "offer from alice")]
    [ringing] = net.of("bob", Ringing)
    assert (ringing.caller, ringing.room_id) == (ALICE, ROOM)
    bob = net.call("bob", call_id)
    assert bob.state == "ringing" and bob.polite

    net.do("bob", bob.answer("answer from bob"))
    alice = net.call("alice", call_id)
    assert net.of("alice", RemoteAnswer) == [RemoteAnswer(call_id, "answer from bob")]
    assert net.of("alice", Connected) == net.of("bob", Connected) == [Connected(call_id)]
    assert alice.state is bob.state is CallState.CONNECTED
    assert (alice.peer_user_id, alice.peer_party_id) == (BOB, bob.party_id)
    select = [s for s in net.sent if s.event_type == ev.SELECT_ANSWER]
    assert [s.content["selected_party_id"] for s in select] == [bob.party_id]

    net.do("alice", alice.local_candidates([HOST], done=True))
    net.do("bob", bob.local_candidates([HOST], done=True))
    expected = RemoteCandidates(call_id, (HOST,), done=True)
    assert net.of("bob", RemoteCandidates) == net.of("alice", RemoteCandidates) == [expected]

    net.do("alice", alice.hangup())
    assert net.of("alice", Ended) == [Ended(call_id, "user_hangup", by_us=True)]
    assert net.of("bob", Ended) == [Ended(call_id, "user_hangup", by_us=False)]
    assert (alice.state, bob.state) == ("ended", "ended")
    # Each side saw each of its own events come back, and ignored it.
    mine = {"alice": 4, "bob": 2}  # invite, select, candidates, hangup / answer, candidates
    for device, count in mine.items():
        assert net.ignored(device).count("our own echo") == count


def test_reject() -> None:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    bob = net.call("bob", call_id)
    net.do("bob", bob.reject())
    assert net.of("bob", Ended) == [Ended(call_id, REJECTED, by_us=True)]
    assert net.of("alice", Ended) == [Ended(call_id, REJECTED, by_us=False)]
    # m.call.reject: the caller selects the reject just like an answer.
    assert [s.event_type for s in net.sent] == [ev.INVITE, ev.REJECT, ev.SELECT_ANSWER]
    assert net.sent[-1].content["selected_party_id"] == bob.party_id


def test_hangup_while_ringing_is_a_reject() -> None:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    net.do("bob", net.call("bob", call_id).hangup())
    assert net.sent[1].event_type == ev.REJECT


def test_caller_cancels_before_answer() -> None:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    net.do("alice", net.call("alice", call_id).hangup())
    assert net.of("bob", Ended) == [Ended(call_id, "user_hangup", by_us=False)]


def test_invite_timeout() -> None:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    expires = net.call("alice", call_id).expires_at_ms
    assert expires is not None
    assert net.routers["alice"].tick(expires - 1) == []
    assert net.routers["bob"].tick(expires - 1) == []
    # The callee stops ringing by itself; it sends nothing.
    bob_expires = net.call("bob", call_id).expires_at_ms
    assert bob_expires is not None
    assert net.routers["bob"].tick(bob_expires) == [Ended(call_id, INVITE_TIMEOUT, False)]
    out = net.routers["alice"].tick(expires)
    assert out[1:] == [Ended(call_id, INVITE_TIMEOUT, by_us=True)]
    assert isinstance(out[0], Send) and out[0].content["reason"] == "invite_timeout"
    net.do("alice", out)
    assert net.ignored("bob")[-1] == "m.call.hangup after the call ended"


@pytest.mark.parametrize(("age", "rings"), [(0, True), (LIFETIME - 1, True), (LIFETIME, False)])
def test_stale_invite_is_ignored(age: int, rings: bool) -> None:
    caller = CallSession(ROOM, ALICE, "c1", "p1")
    [invite] = caller.place("sdp", LIFETIME, 0, invitee=BOB)
    assert isinstance(invite, Send)
    router = CallRouter(BOB)
    out = router.on_event(ROOM, room_event(invite, ALICE, 0, age=age), 500_000)
    if rings:
        assert isinstance(out[-1], Ringing)
        assert out[-1].expires_at_ms == 500_000 + LIFETIME - age
    else:
        assert out == [Ignored("c1", f"stale invite: {age} ms old, lifetime {LIFETIME}")]
        assert router.session("c1") is None


def test_age_falls_back_to_origin_server_ts() -> None:
    caller = CallSession(ROOM, ALICE, "c1", "p1")
    [invite] = caller.place("sdp", LIFETIME, 0)
    assert isinstance(invite, Send)
    event = room_event(invite, ALICE, 1_000)
    del event["unsigned"]
    out = CallRouter(BOB).on_event(ROOM, event, 1_000 + LIFETIME)
    assert [type(o) for o in out] == [Ignored]


# -- glare ------------------------------------------------------------------------------


@pytest.mark.parametrize("lesser", ["alice", "bob"])
@pytest.mark.parametrize("first", ["alice", "bob"])
def test_glare_lesser_call_id_survives(lesser: str, first: str) -> None:
    net = Net()
    greater = "bob" if lesser == "alice" else "alice"
    net.add(lesser, {"alice": ALICE, "bob": BOB}[lesser], prefix="A")
    net.add(greater, {"alice": ALICE, "bob": BOB}[greater], prefix="B")
    second = "bob" if first == "alice" else "alice"
    # Both invites are sent before either side has seen the other's.
    ids_ = {d: net.place(d, run=False) for d in (first, second)}
    net.run()
    kept, dropped = ids_[lesser], ids_[greater]
    assert kept < dropped
    # The side whose outbound call is greater aborts it and answers the other instead.
    assert net.of(greater, Ended) == [Ended(dropped, REPLACED, by_us=True)]
    assert net.of(greater, Replaced) == [Replaced(kept, dropped)]
    assert net.of(greater, Ringing) == []
    assert f"glare: our call {kept} is kept, this one dropped" in net.ignored(lesser)
    net.do(greater, net.call(greater, kept).answer("auto answer"))
    assert net.call(lesser, kept).state is CallState.CONNECTED
    assert net.call(greater, kept).state is CallState.CONNECTED
    assert net.call(lesser, dropped).state is net.call(greater, dropped).state is CallState.ENDED
    # Nothing was sent for the dropped call besides its invite.
    assert [s.event_type for s in net.sent if s.call_id == dropped] == [ev.INVITE]


def test_glare_while_preparing_answers_the_ringing_call() -> None:
    net = pair()
    call_id = net.place("bob", invitee=ALICE)
    sent = len(net.sent)
    assert net.place("alice", invitee=BOB) == call_id
    assert net.out["alice"][-1] == Replaced(call_id, None)
    assert len(net.sent) == sent  # no second invite


def test_glare_only_within_one_room() -> None:
    router = CallRouter(ALICE, new_id=ids("B"))
    router.place("!other:a.test", "sdp", LIFETIME, 0, invitee=BOB)
    caller = CallSession(ROOM, BOB, "A1", "p1")
    [invite] = caller.place("sdp", LIFETIME, 0)
    assert isinstance(invite, Send)
    assert isinstance(router.on_event(ROOM, room_event(invite, BOB, 0), 0)[-1], Ringing)


# -- several devices and users ----------------------------------------------------------


def test_answered_on_another_device_of_the_callee() -> None:
    net = Net()
    net.add("alice", ALICE)
    net.add("bob1", BOB)
    net.add("bob2", BOB)
    call_id = net.place("alice", invitee=BOB)
    assert len(net.of("bob1", Ringing)) == len(net.of("bob2", Ringing)) == 1
    net.do("bob1", net.call("bob1", call_id).answer("answer from bob1"))
    assert net.of("bob2", Ended) == [Ended(call_id, ANSWERED_ELSEWHERE, by_us=False)]
    # It stopped ringing on seeing bob1's answer, before the caller's select_answer.
    assert "m.call.select_answer after the call ended" in net.ignored("bob2")
    assert net.call("bob1", call_id).state is CallState.CONNECTED


def test_two_answers_only_the_selected_one_counts() -> None:
    net = Net()
    net.add("alice", ALICE)
    net.add("bob", BOB)
    net.add("carol", CAROL)
    call_id = net.place("alice")  # no invitee: anyone in the room may answer
    net.post("bob", net.call("bob", call_id).answer("answer from bob"))
    net.post("carol", net.call("carol", call_id).answer("answer from carol"))
    net.run()
    assert net.of("alice", RemoteAnswer) == [RemoteAnswer(call_id, "answer from bob")]
    assert "answer after another answer was selected" in net.ignored("alice")
    assert net.of("carol", Ended) == [Ended(call_id, ANSWERED_ELSEWHERE, by_us=False)]
    assert net.call("bob", call_id).state is CallState.CONNECTED
    # Carol's candidates and hangup do not touch the call.
    net.do("alice", net.call("alice", call_id).local_candidates([HOST]))
    assert net.call("alice", call_id).state is CallState.CONNECTED


def test_rejected_on_another_device_stops_ringing() -> None:
    net = Net()
    net.add("alice", ALICE)
    net.add("bob1", BOB)
    net.add("bob2", BOB)
    call_id = net.place("alice", invitee=BOB)
    net.do("bob1", net.call("bob1", call_id).reject())
    assert net.of("bob2", Ended) == [Ended(call_id, REJECTED_ELSEWHERE, by_us=True)]
    assert net.of("alice", Ended) == [Ended(call_id, REJECTED, by_us=False)]


def test_calling_yourself_on_another_device() -> None:
    net = Net()
    net.add("laptop", ALICE)
    net.add("doorbell", ALICE)
    call_id = net.place("doorbell", invitee=ALICE)
    assert net.of("doorbell", Ringing) == []  # its own invite is its echo
    net.do("laptop", net.call("laptop", call_id).answer("answer"))
    assert net.call("doorbell", call_id).state is CallState.CONNECTED
    assert net.call("laptop", call_id).state is CallState.CONNECTED


def test_invite_from_own_user_without_invitee_does_not_ring() -> None:
    net = Net()
    net.add("laptop", ALICE)
    net.add("phone", ALICE)
    net.add("bob", BOB)
    net.place("phone")
    assert net.of("laptop", Ringing) == [] and len(net.of("bob", Ringing)) == 1
    assert "invite from our own user to the room" in net.ignored("laptop")


def test_invite_for_another_user_does_not_ring() -> None:
    net = Net()
    net.add("alice", ALICE)
    net.add("bob", BOB)
    net.add("carol", CAROL)
    net.place("alice", invitee=CAROL)
    assert net.of("bob", Ringing) == [] and len(net.of("carol", Ringing)) == 1
    assert f"invite for {CAROL}" in net.ignored("bob")


def test_hangup_or_negotiate_from_someone_else_is_ignored() -> None:
    net, call_id = connected_call()
    mallory = CallSession(ROOM, CAROL, call_id, "M1")
    mallory.state, mallory.direction = CallState.CONNECTED, "inbound"
    sends = [o for o in mallory.renegotiate("evil") + mallory.hangup() if isinstance(o, Send)]
    assert [s.event_type for s in sends] == [ev.NEGOTIATE, ev.HANGUP]
    for send in sends:
        for device in ("alice", "bob"):
            out = net.routers[device].on_event(ROOM, room_event(send, CAROL, net.now), net.now)
            assert [type(o) for o in out] == [Ignored]
    assert net.call("alice", call_id).state is net.call("bob", call_id).state is CallState.CONNECTED


# -- candidates and renegotiation -------------------------------------------------------


def test_candidates_before_the_answer_are_released_after_it() -> None:
    caller = CallSession(ROOM, ALICE, "c1", "pa")
    caller.place("offer", LIFETIME, 0, invitee=BOB)
    callee = CallSession(ROOM, BOB, "c1", "pb")
    callee.state, callee.direction = CallState.CONNECTING, "inbound"
    other = CallSession(ROOM, BOB, "c1", "pz")  # another device of Bob, never selected
    other.state, other.direction = CallState.CONNECTING, "inbound"
    early = [o for o in callee.local_candidates([HOST], done=True) if isinstance(o, Send)]
    stray = [o for o in other.local_candidates([HOST]) if isinstance(o, Send)]
    answer = Send("c1", ROOM, ev.ANSWER, ev.answer_content("c1", "pb", "answer"))
    assert caller.receive(room_event(early[0], BOB, 1), 1) == []
    assert caller.receive(room_event(stray[0], BOB, 2), 2) == []
    out = caller.receive(room_event(answer, BOB, 3), 3)
    assert [type(o) for o in out] == [Send, RemoteAnswer, RemoteCandidates, Connected]
    assert out[2] == RemoteCandidates("c1", (HOST,), done=True)
    # Later candidates of the selected party flow straight through; others are ignored.
    assert caller.receive(room_event(early[0], BOB, 4), 4)[0] == out[2]
    assert [type(o) for o in caller.receive(room_event(stray[0], BOB, 5), 5)] == [Ignored]


def test_end_of_candidates_alone() -> None:
    net, call_id = connected_call()
    net.do("bob", net.call("bob", call_id).local_candidates([], done=True))
    assert net.of("alice", RemoteCandidates) == [RemoteCandidates(call_id, (), done=True)]
    # The marker names the first media line (for clients that require one, as nio does).
    assert net.sent[-1].content["candidates"] == [
        {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}
    ]
    assert net.call("bob", call_id).local_candidates([]) == []


def test_renegotiation_both_ways() -> None:
    net, call_id = connected_call()
    alice, bob = net.call("alice", call_id), net.call("bob", call_id)
    assert not alice.polite and bob.polite
    net.do("alice", alice.renegotiate("offer 2"))
    [offer] = net.of("bob", RemoteNegotiate)
    assert (offer.description.type, offer.description.sdp) == ("offer", "offer 2")
    net.do("bob", bob.answer_negotiation("answer 2"))
    [answer] = net.of("alice", RemoteNegotiate)
    assert (answer.description.type, answer.description.sdp) == ("answer", "answer 2")
    net.do("bob", bob.renegotiate("offer 3"))
    assert net.of("alice", RemoteNegotiate)[-1].description.sdp == "offer 3"
    assert alice.state is bob.state is CallState.CONNECTED


def test_stale_negotiate_is_ignored() -> None:
    net, call_id = connected_call()
    [send] = net.call("alice", call_id).renegotiate("offer 2", lifetime_ms=5_000)
    assert isinstance(send, Send)
    out = net.routers["bob"].on_event(ROOM, room_event(send, ALICE, net.now, age=5_000), net.now)
    assert out == [Ignored(call_id, "stale negotiate: 5000 ms old")]


def test_negotiate_before_connected_is_refused() -> None:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    out = net.call("alice", call_id).renegotiate("offer 2")
    assert out == [Ignored(call_id, "negotiate: the call is invite_sent")]


# -- odd inputs -------------------------------------------------------------------------


def test_second_invite_with_the_same_call_id_is_ignored() -> None:
    net = pair()
    call_id = net.place("alice", invitee=BOB)
    invite = net.sent[0]
    out = net.routers["bob"].on_event(ROOM, room_event(invite, ALICE, net.now), net.now)
    assert out == [Ignored(call_id, "a second invite for this call")]
    assert len(net.of("bob", Ringing)) == 1


def test_local_actions_in_the_wrong_state_change_nothing() -> None:
    net, call_id = connected_call()
    alice, bob = net.call("alice", call_id), net.call("bob", call_id)
    assert [type(o) for o in alice.answer("x") + alice.reject() + bob.reject()] == [Ignored] * 3
    assert [type(o) for o in alice.place("x", LIFETIME, 0)] == [Ignored]
    net.do("bob", bob.hangup("user_busy"))
    assert net.of("alice", Ended) == [Ended(call_id, "user_busy", by_us=False)]
    late = alice.hangup() + bob.hangup() + alice.local_candidates([HOST], True)
    assert [type(o) for o in late] == [Ignored] * 3
    assert alice.tick(10**12) == []


def test_unknown_call_and_wrong_room() -> None:
    net, call_id = connected_call()
    hangup = Send("nope", ROOM, ev.HANGUP, ev.hangup_content("nope", "x1"))
    out = net.routers["bob"].on_event(ROOM, room_event(hangup, ALICE, net.now), net.now)
    assert out == [Ignored("nope", "m.call.hangup of an unknown call")]
    hangup = Send(call_id, ROOM, ev.HANGUP, ev.hangup_content(call_id, "x1"))
    event = room_event(hangup, ALICE, net.now)
    out = net.routers["bob"].on_event("!elsewhere:a.test", event, net.now)
    assert [type(o) for o in out] == [Ignored]
    assert net.call("bob", call_id).state is CallState.CONNECTED


def test_hangup_without_reason_means_user_hangup() -> None:
    net, call_id = connected_call()
    content = ev.hangup_content(call_id, net.call("alice", call_id).party_id)
    del content["reason"]
    event = room_event(Send(call_id, ROOM, ev.HANGUP, content), ALICE, net.now)
    out = net.routers["bob"].on_event(ROOM, event, net.now)
    assert out == [Ended(call_id, "user_hangup", by_us=False)]


def test_invite_hung_up_within_one_sync_never_rings() -> None:
    caller = CallSession(ROOM, ALICE, "c1", "p1")
    sends = caller.place("sdp", LIFETIME, 0) + caller.hangup()
    events = [room_event(s, ALICE, 0) for s in sends if isinstance(s, Send)]
    out = CallRouter(BOB).on_events(ROOM, events, 10)
    assert out == [Ignored("c1", "invite ended within the same sync")]
    fresh = CallRouter(BOB).on_events(ROOM, events[:1], 10)
    assert [type(o) for o in fresh] == [RemoteOffer, Ringing]


def test_peer_leaving_the_room_ends_the_call() -> None:
    net, call_id = connected_call()
    assert net.routers["alice"].peer_left(ROOM, CAROL) == []
    assert net.routers["alice"].peer_left(ROOM, BOB) == [Ended(call_id, "user_hangup", False)]


def test_ended_calls_are_forgotten_after_a_while() -> None:
    net, call_id = connected_call()
    net.do("alice", net.call("alice", call_id).hangup())
    router = net.routers["bob"]
    router.tick(0)
    router.tick(299_999)
    assert router.session(call_id) is not None
    router.tick(300_000)
    assert router.session(call_id) is None and router.sessions() == []


def _invite_content() -> dict[str, Any]:
    return ev.invite_content("call1", "party1", "v=0", LIFETIME)


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("missing call_id", lambda c: c.pop("call_id"), "call_id must be an opaque identifier"),
    ("call_id with ':'", lambda c: c.update(call_id="a:b"), "call_id must be an opaque"),
    ("long call_id", lambda c: c.update(call_id="x" * 256), "call_id must be an opaque"),
    ("missing party_id", lambda c: c.pop("party_id"), "party_id must be an opaque"),
    ("version list", lambda c: c.update(version=["1"]), "version must be a string"),
    ("version bool", lambda c: c.update(version=True), "version must be a string"),
    ("version null", lambda c: c.update(version=None), "version must be a string"),
    ("version 0", lambda c: c.update(version=0), "version 0 calls are not supported"),
    ("sdp number", lambda c: c["offer"].update(sdp=5), "offer.sdp must be a non-empty string"),
    ("sdp empty", lambda c: c["offer"].update(sdp=""), "offer.sdp must be a non-empty"),
    ("offer string", lambda c: c.update(offer="v=0"), "offer must be an object"),
    ("no lifetime", lambda c: c.pop("lifetime"), "lifetime must be an integer"),
    ("lifetime str", lambda c: c.update(lifetime="60000"), "lifetime must be an integer"),
    ("lifetime float", lambda c: c.update(lifetime=6e4), "lifetime must be an integer"),
    ("lifetime 0", lambda c: c.update(lifetime=0), "lifetime 0 ms is out of range"),
    ("huge lifetime", lambda c: c.update(lifetime=2**53), "is out of range"),
    ("invitee", lambda c: c.update(invitee="bob"), "invitee:"),
]


@pytest.mark.parametrize(("what", "spoil", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_invite_is_ignored_with_a_reason(
    what: str, spoil: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    content = _invite_content()
    spoil(content)
    event = {"type": ev.INVITE, "sender": ALICE, "content": content, "origin_server_ts": 0}
    router = CallRouter(BOB)
    [out] = router.on_event(ROOM, event, 0)
    assert isinstance(out, Ignored) and out.reason.startswith("malformed: ")
    assert reason in out.reason
    assert router.sessions() == []


OTHER_MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    (ev.ANSWER, {"answer": {"type": "answer"}}, "answer.sdp"),
    (ev.CANDIDATES, {"candidates": []}, "candidates must be a list"),
    (ev.CANDIDATES, {"candidates": [{"candidate": "a=x"}]}, "needs sdpMid or sdpMLineIndex"),
    (ev.CANDIDATES, {"candidates": [{"candidate": 1, "sdpMid": "0"}]}, "must be a string"),
    (ev.CANDIDATES, {"candidates": [{"candidate": "x", "sdpMLineIndex": -1}]}, "non-negative"),
    (ev.CANDIDATES, {"candidates": [{"candidate": "x", "sdpMid": 0}]}, "sdpMid must be"),
    (ev.CANDIDATES, {"candidates": ["x"]}, "a candidate must be an object"),
    (ev.SELECT_ANSWER, {"selected_party_id": 7}, "selected_party_id"),
    (ev.NEGOTIATE, {"description": {"type": "pranswer", "sdp": "v"}, "lifetime": 1}, "offer or"),
    (ev.NEGOTIATE, {"description": {"type": "offer", "sdp": "v"}}, "lifetime must be"),
    (ev.HANGUP, {"reason": 3}, "reason must be a string"),
    ("m.call.unknown", {}, "not a call event"),
]


@pytest.mark.parametrize(("event_type", "extra", "reason"), OTHER_MALFORMED)
def test_other_malformed_events_are_ignored(
    event_type: str, extra: dict[str, Any], reason: str
) -> None:
    net, call_id = connected_call()
    content = {"call_id": call_id, "party_id": "zz", "version": "1", **extra}
    event = {"type": event_type, "sender": ALICE, "content": content}
    [out] = net.routers["bob"].on_event(ROOM, event, net.now)
    assert isinstance(out, Ignored) and out.call_id == call_id and reason in out.reason
    assert net.call("bob", call_id).state is CallState.CONNECTED


def test_numeric_version_one_is_accepted() -> None:
    content = _invite_content() | {"version": 1}
    event = {"type": ev.INVITE, "sender": ALICE, "content": content, "origin_server_ts": 0}
    assert isinstance(CallRouter(BOB).on_event(ROOM, event, 0)[-1], Ringing)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
FIELDS = ["call_id", "party_id", "version", "offer", "answer", "lifetime", "invitee",
          "candidates", "selected_party_id", "description", "reason"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    event_type=st.sampled_from(sorted(ev.CALL_EVENT_TYPES)),
    content=st.dictionaries(st.sampled_from(FIELDS), JSON),
    event=st.dictionaries(st.sampled_from(["sender", "unsigned", "origin_server_ts"]), JSON),
)
def test_any_content_never_raises(
    event_type: str, content: dict[str, Any], event: dict[str, Any]
) -> None:
    net, call_id = connected_call()
    content.setdefault("call_id", call_id)
    for device in ("alice", "bob"):
        raw = {"type": event_type, "sender": BOB, **event, "content": content}
        for out in net.routers[device].on_event(ROOM, raw, net.now):
            assert isinstance(out, CallOutput)
