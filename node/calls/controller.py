"""The calls of one device: the signalling (node/calls/router.py) joined to the media
(node/calls/media.py), whatever carries the room events.

The headless agent (node/calls/agent.py, `croft call`) feeds it from its own /sync and
sends through its own client; the TUI feeds it from matrix-nio. Both hand it:

- ``send(room_id, event_type, content)``: a coroutine that sends a room event;
- ``media_for(call)``: makes the :class:`~node.calls.media.MediaSession` of a call
  (which ICE servers, what to play, where the received audio and video go);
- ``observe(change)``: told of each :class:`CallChange` (ringing, connected, ended ...).

Spec: content/client-server-api/modules/voip_events.md. The caller sends its offer in
the invite, then its candidates as m.call.candidates with end-of-candidates (aiortc
gathers them all before it returns a description, so they are also in the SDP: peers
that trickle and peers that do not both find them). Glare's surviving call is answered
on the user's behalf ("Glare": the user wanted this call).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from node.calls import signalling as sig
from node.calls.events import Candidate
from node.calls.router import CallRouter

if TYPE_CHECKING:
    from node.calls.media import MediaSession

log = logging.getLogger(__name__)

DEFAULT_LIFETIME_MS = 60_000  # how long an invite rings
TICK_S = 1.0

Send = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


@dataclass
class Call:
    """One call as the user sees it."""

    call_id: str
    room_id: str
    outbound: bool
    peer: str | None = None  # the other user, once known
    state: str = "ringing"  # ringing, calling, connecting, connected, ended
    media: MediaSession | None = None
    offer: str | None = None  # a received offer, until answered
    early: list[dict[str, Any]] = field(default_factory=list)  # candidates before media
    placed_at: float = field(default_factory=time.monotonic)
    connected_at: float | None = None  # the media is up
    ended_reason: str | None = None
    ended_by_us: bool = False

    @property
    def duration_s(self) -> float:
        """How long the media has been up (0 before)."""
        if self.connected_at is None:
            return 0.0
        return time.monotonic() - self.connected_at


@dataclass(frozen=True)
class CallChange:
    """What happened to ``call``: ``ringing``, ``calling``, ``connecting``,
    ``connected`` (media up), ``ended``, or ``problem`` (with ``detail``)."""

    kind: str
    call: Call
    detail: str = ""


class CallError(Exception):
    """A local action that cannot be done (no such call, not ringing ...)."""


class CallController:
    def __init__(
        self,
        user_id: str,
        send: Send,
        media_for: Callable[[Call], MediaSession],
        observe: Callable[[CallChange], None] = lambda change: None,
        *,
        lifetime_ms: int = DEFAULT_LIFETIME_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.user_id = user_id
        self.router = CallRouter(user_id)
        self._send = send
        self._media_for = media_for
        self._observe = observe
        self.lifetime_ms = lifetime_ms
        self._clock = clock
        self.calls: dict[str, Call] = {}
        self._lock = asyncio.Lock()  # one input at a time: outputs are applied in order
        self._tasks: set[asyncio.Task[None]] = set()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def active(self) -> list[Call]:
        return [c for c in self.calls.values() if c.state != "ended"]

    # -- local actions ------------------------------------------------------------------

    async def place(self, room_id: str, invitee: str | None = None) -> Call:
        """Call ``room_id`` (its other member, or ``invitee``)."""
        async with self._lock:
            ringing = self.router.ringing_in(room_id)
            if ringing is not None:  # glare, first case: answer that one instead
                call = self.calls[ringing.call_id]
                await self._answer(call)
                return call
            probe = Call("", room_id, outbound=True, peer=invitee, state="calling")
            media = self._media_for(probe)
            try:
                offer = await media.create_offer()
            except Exception:
                await media.close()
                raise
            call_id, outputs = self.router.place(
                room_id, offer, self.lifetime_ms, self._now_ms(), invitee
            )
            probe.call_id, probe.media = call_id, media
            self.calls[call_id] = probe
            self._watch_media(probe)
            await self._apply(outputs)
            await self._send_candidates(probe)
            self._tell("calling", probe)
            return probe

    async def answer(self, call_id: str) -> None:
        async with self._lock:
            await self._answer(self._call(call_id))

    async def reject(self, call_id: str) -> None:
        async with self._lock:
            session = self.router.session(call_id)
            if session is None or call_id not in self.calls:
                raise CallError(f"no call {call_id}")
            await self._apply(session.reject())

    async def hangup(self, call_id: str, reason: str = "user_hangup") -> None:
        async with self._lock:
            session = self.router.session(call_id)
            if session is None or call_id not in self.calls:
                raise CallError(f"no call {call_id}")
            await self._apply(session.hangup(reason))

    async def hangup_all(self) -> None:
        for call in self.active():
            try:
                await self.hangup(call.call_id)
            except CallError:
                pass

    def mute(self, call_id: str, muted: bool = True) -> None:
        call = self._call(call_id)
        if call.media is not None:
            call.media.mute(muted)

    # -- what arrives -------------------------------------------------------------------

    async def on_room_events(self, room_id: str, events: list[dict[str, Any]]) -> None:
        """The new timeline events of one room, from one /sync, oldest first."""
        calls = [e for e in events if str(e.get("type", "")).startswith("m.call.")]
        if not calls:
            return
        async with self._lock:
            await self._apply(self.router.on_events(room_id, calls, self._now_ms()))

    async def tick(self) -> None:
        """Time passes: invites that were not answered in their lifetime end."""
        async with self._lock:
            outputs = [o for s in self.router.sessions() for o in s.tick(self._now_ms())]
            await self._apply(outputs)

    async def run_ticks(self) -> None:
        """Tick forever (a task of the embedding)."""
        while True:
            await asyncio.sleep(TICK_S)
            await self.tick()

    async def close(self) -> None:
        """Hang up what is live and release every media session."""
        await self.hangup_all()
        for call in self.calls.values():
            if call.media is not None:
                await call.media.close()
        for task in list(self._tasks):
            task.cancel()

    # -- applying the signalling's outputs ----------------------------------------------

    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise CallError(f"no call {call_id}")
        return call

    async def _answer(self, call: Call) -> None:
        session = self.router.session(call.call_id)
        if session is None or call.offer is None or session.state is not sig.CallState.RINGING:
            raise CallError(f"call {call.call_id} is not ringing")
        media = call.media or self._media_for(call)
        call.media = media
        self._watch_media(call)
        answer = await media.accept_offer(call.offer)
        call.offer = None
        if call.early:
            await media.add_remote_candidates(call.early)
            call.early.clear()
        call.state = "connecting"
        await self._apply(session.answer(answer))
        await self._send_candidates(call)
        self._tell("connecting", call)

    async def _send_candidates(self, call: Call) -> None:
        session = self.router.session(call.call_id)
        if session is None or call.media is None:
            return
        found = [
            Candidate(c["candidate"], c.get("sdpMid"), c.get("sdpMLineIndex"))
            for c in call.media.local_candidates()
        ]
        await self._apply(session.local_candidates(found, done=True))

    async def _apply(self, outputs: list[sig.CallOutput]) -> None:
        for out in outputs:
            try:
                await self._apply_one(out)
            except Exception as e:  # a peer's SDP aiortc cannot take, a failed send...
                log.warning("call %s: %s failed: %s", out.call_id, type(out).__name__, e)
                call = self.calls.get(out.call_id)
                if call is not None:
                    self._tell("problem", call, f"{type(out).__name__}: {e}")

    async def _apply_one(self, out: sig.CallOutput) -> None:
        call = self.calls.get(out.call_id)
        if isinstance(out, sig.Send):
            await self._send(out.room_id, out.event_type, out.content)
        elif isinstance(out, sig.Ringing):
            call = self._inbound(out.call_id)
            call.room_id, call.peer = out.room_id, out.caller
            self._tell("ringing", call)
        elif isinstance(out, sig.RemoteOffer):
            self._inbound(out.call_id).offer = out.sdp
        elif isinstance(out, sig.RemoteAnswer) and call is not None and call.media:
            call.state = "connecting"
            await call.media.accept_answer(out.sdp)
            self._tell("connecting", call)
        elif isinstance(out, sig.RemoteCandidates) and call is not None:
            found = [c.to_content() for c in out.candidates]
            if call.media is not None:
                await call.media.add_remote_candidates(found)
            else:  # ringing: the media is made when the user answers
                call.early.extend(found[: 1_000 - len(call.early)])
        elif isinstance(out, sig.RemoteNegotiate) and call is not None and call.media:
            desc = out.description
            answer = await call.media.accept_renegotiation(desc.sdp, desc.type)
            session = self.router.session(out.call_id)
            if answer is not None and session is not None:
                await self._apply(session.answer_negotiation(answer))
        elif isinstance(out, sig.Replaced):
            old = self.calls.get(out.old_call_id or "")
            if old is not None and old.media is not None:
                await old.media.close()
                old.media = None
            if call is not None:
                await self._answer(call)
        elif isinstance(out, sig.Ended):
            await self._ended(out)
        elif isinstance(out, sig.Ignored):
            log.info("call %s: ignored: %s", out.call_id, out.reason)

    def _inbound(self, call_id: str) -> Call:
        """The Call of an incoming call_id (made on its first output)."""
        call = self.calls.get(call_id)
        if call is None:
            session = self.router.session(call_id)
            call = Call(call_id, session.room_id if session else "", outbound=False)
            self.calls[call_id] = call
        return call

    async def _ended(self, out: sig.Ended) -> None:
        call = self.calls.get(out.call_id)
        if call is None or call.state == "ended":
            return
        call.state, call.ended_reason, call.ended_by_us = "ended", out.reason, out.by_us
        if call.media is not None:
            await call.media.close()
        self._tell("ended", call, out.reason)

    # -- media state --------------------------------------------------------------------

    def _watch_media(self, call: Call) -> None:
        """Tell ``connected`` when ICE and DTLS are up; a media failure hangs up."""
        media = call.media
        if media is None:
            return

        async def watch() -> None:
            try:
                await media.wait_connected(within=self.lifetime_ms / 1000 + 30)
            except (ConnectionError, TimeoutError) as e:
                if call.state != "ended":
                    self._tell("problem", call, f"media: {e}")
                    try:
                        await self.hangup(call.call_id, "ice_failed")
                    except CallError:
                        pass
                return
            if call.state != "ended":
                call.state = "connected"
                call.connected_at = time.monotonic()
                self._tell("connected", call)

        task = asyncio.ensure_future(watch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tell(self, kind: str, call: Call, detail: str = "") -> None:
        if kind in ("calling", "connecting") and call.state not in ("ended", "connected"):
            call.state = kind
        try:
            self._observe(CallChange(kind, call, detail))
        except Exception:  # an observer's bug must not break the call
            log.exception("call observer failed on %s", kind)
