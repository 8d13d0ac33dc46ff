"""node/calls/controller.py: the signalling's outputs applied to the media, for two
devices whose room events are passed by hand and whose media is a stand-in recording
what it was asked (pure logic: the real media is tests/calls/test_media.py's and
test_agent_lab.py's)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from node.calls.controller import Call, CallChange, CallController, CallError

ROOM = "!room:x"
_ids = itertools.count()


class StandInMedia:
    """Records the SDP and candidates it gets; connects when told to."""

    def __init__(self, name: str, fail_offer: bool = False) -> None:
        self.name = name
        self.fail_offer = fail_offer
        self.remote: list[tuple[str, str]] = []  # (kind, sdp)
        self.candidates: list[dict[str, Any]] = []
        self.muted = False
        self.closed = False
        self.first_audio_at: float | None = None
        self._up = asyncio.Event()

    async def create_offer(self) -> str:
        return f"v=0 offer from {self.name}"

    async def accept_offer(self, sdp: str) -> str:
        if self.fail_offer:
            raise ValueError("an SDP aiortc cannot take")
        self.remote.append(("offer", sdp))
        return f"v=0 answer from {self.name}"

    async def accept_answer(self, sdp: str) -> None:
        self.remote.append(("answer", sdp))

    async def add_remote_candidates(self, candidates: list[dict[str, Any]]) -> None:
        self.candidates += candidates

    def local_candidates(self) -> list[dict[str, Any]]:
        return [{"candidate": f"candidate:1 1 udp 1 10.0.0.1 {self.name}", "sdpMid": "0"}]

    def mute(self, muted: bool = True) -> None:
        self.muted = muted

    async def wait_connected(self, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            await self._up.wait()

    async def accept_renegotiation(self, sdp: str, kind: str) -> str | None:
        self.remote.append((kind, sdp))
        return f"v=0 reanswer from {self.name}" if kind == "offer" else None

    async def close(self) -> None:
        self.closed = True


class Device:
    """One user's device: a controller, the events it sent, what it was told."""

    def __init__(self, user: str, fail_offer: bool = False) -> None:
        self.user = user
        self.sent: list[dict[str, Any]] = []  # not delivered yet
        self.log: list[str] = []  # the type of everything ever sent
        self.changes: list[CallChange] = []
        self.media: list[StandInMedia] = []
        self.fail_offer = fail_offer
        self.controller = CallController(user, self._send, self._media_for, self.changes.append)

    async def _send(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        self.log.append(event_type)
        self.sent.append(
            {
                "type": event_type,
                "sender": self.user,
                "content": content,
                "event_id": f"$e{next(_ids)}",
                "origin_server_ts": 0,
                "unsigned": {"age": 0},
            }
        )

    def _media_for(self, call: Call) -> Any:
        media = StandInMedia(self.user, self.fail_offer)
        self.media.append(media)
        return media

    def kinds(self) -> list[str]:
        return [c.kind for c in self.changes]

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]


async def deliver(source: Device, *targets: Device) -> None:
    """Everything ``source`` sent so far reaches ``targets`` (and itself: the echo)."""
    events, source.sent = source.sent, []
    for target in (source, *targets):
        await target.controller.on_room_events(ROOM, [dict(e) for e in events])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_placed_answered_connected_and_hung_up() -> None:
    a, b = Device("@a:x"), Device("@b:y")
    call = await a.controller.place(ROOM)
    assert a.types() == ["m.call.invite", "m.call.candidates"]
    assert a.sent[1]["content"]["candidates"][-1]["candidate"] == ""  # end-of-candidates
    await deliver(a, b)
    assert b.kinds() == ["ringing"]
    ringing = b.changes[0].call
    assert ringing.call_id == call.call_id and ringing.peer == "@a:x"
    assert b.media == []  # no media until the user answers
    await b.controller.answer(call.call_id)
    [media_b] = b.media
    assert media_b.remote == [("offer", "v=0 offer from @a:x")]
    assert media_b.candidates[0]["candidate"].endswith("@a:x")  # buffered while ringing
    assert b.types() == ["m.call.answer", "m.call.candidates"]
    await deliver(b, a)
    assert a.media[0].remote == [("answer", "v=0 answer from @b:y")]
    assert a.types() == ["m.call.select_answer"]
    await deliver(a, b)
    for device in (a, b):
        device.media[0]._up.set()
    await settle()
    assert a.kinds()[-1] == "connected" and b.kinds()[-1] == "connected"
    assert call.state == "connected" and call.duration_s >= 0
    a.controller.mute(call.call_id)
    assert a.media[0].muted
    await a.controller.hangup(call.call_id)
    await deliver(a, b)
    assert a.kinds()[-1] == b.kinds()[-1] == "ended"
    assert (call.ended_reason, call.ended_by_us) == ("user_hangup", True)
    assert b.changes[-1].call.ended_by_us is False
    assert a.media[0].closed and b.media[0].closed
    with pytest.raises(CallError):
        await a.controller.hangup("nonexistent")


async def test_rejected() -> None:
    a, b = Device("@a:x"), Device("@b:y")
    call = await a.controller.place(ROOM)
    await deliver(a, b)
    await b.controller.reject(call.call_id)
    assert b.types() == ["m.call.reject"]
    await deliver(b, a)
    assert call.state == "ended" and call.ended_reason == "rejected"
    assert b.changes[-1].kind == "ended"
    assert a.media[0].closed and b.media == []


async def test_glare_answers_the_surviving_call() -> None:
    a, b = Device("@a:x"), Device("@b:y")
    call_a = await a.controller.place(ROOM)
    call_b = await b.controller.place(ROOM)
    await deliver(a, b)
    await deliver(b, a)
    keep = min(call_a.call_id, call_b.call_id)
    loser, winner = (b, a) if keep == call_a.call_id else (a, b)
    # The side whose call lost answers the other's, on its user's behalf.
    assert "m.call.answer" in loser.log
    assert loser.controller.calls[keep].state == "connecting"
    lost = call_b if keep == call_a.call_id else call_a
    assert lost.state == "ended" and lost.ended_reason == "replaced"
    await deliver(loser, winner)
    assert "m.call.select_answer" in winner.log


async def test_media_that_cannot_take_the_offer_is_a_problem_not_a_crash() -> None:
    a, b = Device("@a:x"), Device("@b:y", fail_offer=True)
    call = await a.controller.place(ROOM)
    await deliver(a, b)
    with pytest.raises(ValueError):
        await b.controller.answer(call.call_id)
    # Still ringing: the user may reject it.
    await b.controller.reject(call.call_id)
    assert b.types() == ["m.call.reject"]


async def test_a_broken_observer_does_not_break_the_call() -> None:
    a, b = Device("@a:x"), Device("@b:y")

    def broken(change: CallChange) -> None:
        raise RuntimeError("observer bug")

    b.controller._observe = broken
    call = await a.controller.place(ROOM)
    await deliver(a, b)
    await b.controller.answer(call.call_id)
    assert b.types() == ["m.call.answer", "m.call.candidates"]
