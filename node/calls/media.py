"""The media of one call: an aiortc RTCPeerConnection behind the SDP of m.call.* events.

Client-server API, "Voice over IP" module: m.call.invite carries the caller's SDP offer,
m.call.answer the callee's answer, m.call.candidates trickled ICE candidates
(``{candidate, sdpMid, sdpMLineIndex}``, an empty ``candidate`` meaning end of
candidates), m.call.negotiate a renegotiation offer or answer. ICE servers come only
from ``GET /_matrix/client/v3/voip/turnServer``: never aiortc's default public STUN
server (``RTCConfiguration(iceServers=[...])`` is always explicit).

aiortc gathers every local candidate before it returns the local description, so the
SDP this module hands out already holds them; :meth:`MediaSession.local_candidates`
extracts them in the m.call.candidates shape for peers (or agents) that trickle.

Host-address restriction: aioice has no public parameter for it. Its
``Connection.gather_candidates`` takes every address of every interface (the module
function ``aioice.ice.get_host_addresses``) and hands the list to the connection's own
``get_component_candidates(component, addresses)``. :class:`MediaSession` overrides that
method *on its own Connection instances only* (reached through
``RTCIceGatherer._connection``) to filter the list, before each gathering; patching the
module function instead would change every other ICE agent in the process.

Imported only when a call starts (aiortc costs ~45 MB and 0.3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import av
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av.frame import Frame
from av.packet import Packet

log = logging.getLogger(__name__)

Candidate = dict[str, Any]  # {"candidate": str, "sdpMid": str, "sdpMLineIndex": int}


class TrackSink(Protocol):
    """Something that consumes a received track (an analyzer, a recorder, a screen)."""

    async def attach(self, track: MediaStreamTrack) -> None: ...

    async def close(self) -> None: ...


def ice_servers(turn: Sequence[Mapping[str, Any]]) -> list[RTCIceServer]:
    """RTCIceServers from responses of ``GET /voip/turnServer`` (``uris``, ``username``,
    ``password``); an empty list (no STUN/TURN at all, host candidates only) when none."""
    servers = []
    for entry in turn:
        uris = [u for u in entry.get("uris", []) if isinstance(u, str)]
        uris = [u for u in uris if u.split(":", 1)[0] in ("stun", "turn", "turns")]
        if uris:
            servers.append(
                RTCIceServer(
                    urls=uris, username=entry.get("username"), credential=entry.get("password")
                )
            )
    return servers


def sdp_candidates(sdp: str) -> list[Candidate]:
    """The ``a=candidate`` lines of ``sdp`` in the m.call.candidates shape."""
    found: list[Candidate] = []
    index, mid = -1, None
    pending: list[str] = []

    def flush() -> None:
        for line in pending:
            found.append({"candidate": line, "sdpMid": mid, "sdpMLineIndex": index})
        pending.clear()

    for line in sdp.splitlines():
        if line.startswith("m="):
            flush()
            index, mid = index + 1, None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :].strip()
        elif line.startswith("a=candidate:") and index >= 0:
            pending.append(line[2:].strip())
    flush()
    return found


def strip_candidates(sdp: str) -> str:
    """``sdp`` without its candidates (and end-of-candidates): for trickling them."""
    kept = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    return "\r\n".join(kept) + "\r\n"


class MutableAudio(MediaStreamTrack):
    """Passes a source's audio through, or silence of the same shape while muted (the
    RTP stream goes on, as browsers do for a disabled track)."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source
        self.muted = False

    async def recv(self) -> Frame | Packet:
        frame = await self.source.recv()
        if not self.muted or not isinstance(frame, av.AudioFrame):
            return frame
        silent = av.AudioFrame(
            format=frame.format.name, layout=frame.layout.name, samples=frame.samples
        )
        for plane in silent.planes:
            plane.update(bytes(plane.buffer_size))
        silent.sample_rate, silent.pts, silent.time_base = (
            frame.sample_rate,
            frame.pts,
            frame.time_base,
        )
        return silent

    def stop(self) -> None:
        super().stop()
        self.source.stop()


@dataclass
class AudioStats:
    """What has been received on the audio track so far."""

    frames: int = 0
    samples: int = 0
    sample_rate: int = 0
    first_frame_at: float | None = None  # time.monotonic()
    last_frame_at: float | None = None

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate if self.sample_rate else 0.0


class MediaSession:
    """One call's media. ``turn``: the /voip/turnServer responses (empty: none);
    ``audio``/``video``: local sources (None: receive only); ``audio_sink``/
    ``video_sink``: consumers of what arrives; ``host_addresses``: the only local
    addresses ICE may use (None: all); ``resolve_mdns``: whether remote ``.local``
    candidates are resolved by multicast DNS (False drops them).

    The session owns the local sources from then on: :meth:`close` stops them."""

    def __init__(
        self,
        turn: Sequence[Mapping[str, Any]] = (),
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        audio_sink: TrackSink | None = None,
        video_sink: TrackSink | None = None,
        host_addresses: Sequence[str] | None = None,
        resolve_mdns: bool = True,
    ) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(turn)))
        self.audio = MutableAudio(audio) if audio is not None else None
        self.video = video
        self.audio_sink = audio_sink
        self.video_sink = video_sink
        self.host_addresses = list(host_addresses) if host_addresses is not None else None
        self.resolve_mdns = resolve_mdns
        self.stats = AudioStats()
        self.started_at: float | None = None  # monotonic: offer created or received
        self.connected_at: float | None = None
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()
        self._settled = asyncio.Event()
        self._relay = MediaRelay()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[Candidate] = []
        self._restricted: list[Any] = []  # aioice Connections whose gathering is filtered
        self._closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    # -- state ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        """aiortc's connection state (ICE and DTLS together): new, connecting,
        connected, failed, closed."""
        return str(self.pc.connectionState)

    @property
    def first_audio_at(self) -> float | None:
        return self.stats.first_frame_at

    @property
    def muted(self) -> bool:
        return self.audio is not None and self.audio.muted

    def mute(self, muted: bool = True) -> None:
        """Send silence instead of the local audio (or the audio again)."""
        if self.audio is not None:
            self.audio.muted = muted

    def unmute(self) -> None:
        self.mute(False)

    async def wait_connected(self, within: float = 20.0) -> None:
        """Until ICE and DTLS are up; ConnectionError when they fail, TimeoutError."""
        async with asyncio.timeout(within):
            await self._settled.wait()
        if not self.connected.is_set():
            raise ConnectionError(f"call media failed ({self.state})")

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected.is_set():
            self.connected_at = time.monotonic()
            self.connected.set()
            self._settled.set()
        elif state in ("failed", "closed"):
            if state == "failed":
                self.failed.set()
            self._settled.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._count_audio(self._relay.subscribe(track)))
            if self.audio_sink is not None:
                self._spawn(self.audio_sink.attach(self._relay.subscribe(track)))
        elif track.kind == "video" and self.video_sink is not None:
            self._spawn(self.video_sink.attach(track))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _count_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            now = time.monotonic()
            if self.stats.first_frame_at is None:
                self.stats.first_frame_at = now
            self.stats.frames += 1
            self.stats.samples += frame.samples
            self.stats.sample_rate = frame.sample_rate
            self.stats.last_frame_at = now

    # -- offer / answer --------------------------------------------------------------

    def _add_local_tracks(self, offering: bool) -> None:
        kinds = {t.kind for t in self.pc.getTransceivers()}
        for kind, track, sink in (
            ("audio", self.audio, self.audio_sink),
            ("video", self.video, self.video_sink),
        ):
            if not offering and kind not in kinds:
                continue  # an answer has exactly the offer's m-lines
            if track is not None and all(s.track is not track for s in self.pc.getSenders()):
                self.pc.addTrack(track)
            elif offering and kind not in kinds and (kind == "audio" or sink is not None):
                self.pc.addTransceiver(kind, direction="recvonly")

    async def _set_local(self, description: RTCSessionDescription) -> str:
        self._restrict_gathering()
        await self.pc.setLocalDescription(description)
        return str(self.pc.localDescription.sdp)

    async def create_offer(self) -> str:
        """The SDP offer for m.call.invite (candidates included)."""
        self.started_at = time.monotonic()
        self._add_local_tracks(offering=True)
        return await self._set_local(await self.pc.createOffer())

    async def accept_offer(self, sdp: str) -> str:
        """Take the offer of an m.call.invite; returns the answer SDP for m.call.answer."""
        self.started_at = time.monotonic()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._add_local_tracks(offering=False)
        answer = await self._set_local(await self.pc.createAnswer())
        await self._apply_pending()
        return answer

    async def accept_answer(self, sdp: str) -> None:
        """Take the answer of the m.call.answer this side selected."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await self._apply_pending()

    async def renegotiate(self) -> str:
        """A new offer for m.call.negotiate (after :meth:`set_video`, say)."""
        self._add_local_tracks(offering=True)
        return await self._set_local(await self.pc.createOffer())

    async def accept_renegotiation(self, sdp: str, type: str) -> str | None:
        """Take an m.call.negotiate description: an offer gives the answer SDP to send
        back, an answer gives None. (Glare between two renegotiation offers is for the
        signalling layer: aiortc cannot roll back a local offer.)"""
        if type == "answer":
            await self.accept_answer(sdp)
            return None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._add_local_tracks(offering=False)
        return await self._set_local(await self.pc.createAnswer())

    async def set_video(self, track: MediaStreamTrack | None) -> bool:
        """Send ``track`` as video (None: stop sending it); True when a renegotiation is
        needed for it to reach the peer (no video m-line yet)."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.sender.replaceTrack(track)
                self.video = track
                return transceiver.direction not in ("sendrecv", "sendonly")
        self.video = track
        return track is not None

    # -- candidates ----------------------------------------------------------------

    def local_candidates(self) -> list[Candidate]:
        """This side's candidates from its local description, for m.call.candidates
        (empty before an offer or answer was made)."""
        description = self.pc.localDescription
        return sdp_candidates(description.sdp) if description is not None else []

    async def add_remote_candidates(self, candidates: Sequence[Mapping[str, Any]]) -> None:
        """Take trickled candidates (kept until the remote description is known); an
        empty ``candidate`` is end of candidates; malformed ones are skipped."""
        if self.pc.remoteDescription is None:
            self._pending.extend(dict(c) for c in candidates)
            return
        for entry in candidates:
            text = entry.get("candidate")
            if not isinstance(text, str):
                continue
            if not text:
                await self.pc.addIceCandidate(None)
                continue
            try:
                candidate = candidate_from_sdp(text.removeprefix("candidate:"))
            except (AssertionError, ValueError, IndexError):
                log.info("skipping a malformed ICE candidate: %r", text)
                continue
            if candidate.ip.endswith(".local") and not self.resolve_mdns:
                continue
            mid, index = entry.get("sdpMid"), entry.get("sdpMLineIndex")
            candidate.sdpMid = mid if isinstance(mid, str) else None
            candidate.sdpMLineIndex = index if isinstance(index, int) else None
            if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
                candidate.sdpMLineIndex = 0
            await self.pc.addIceCandidate(candidate)

    async def _apply_pending(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await self.add_remote_candidates(pending)

    def _restrict_gathering(self) -> None:
        if self.host_addresses is None:
            return
        allowed = set(self.host_addresses)
        for transceiver in self.pc.getTransceivers():
            connection = transceiver.sender.transport.transport.iceGatherer._connection
            if connection in self._restricted:
                continue
            gather = connection.get_component_candidates

            async def restricted(
                component: int,
                addresses: list[str],
                timeout: int = 5,  # noqa: ASYNC109 (aioice's signature)
                _gather: Any = gather,
            ) -> Any:
                return await _gather(
                    component=component,
                    addresses=[a for a in addresses if a in allowed],
                    timeout=timeout,
                )

            setattr(connection, "get_component_candidates", restricted)  # noqa: B010
            self._restricted.append(connection)

    # -- the end -------------------------------------------------------------------

    async def close(self) -> None:
        """Hang up the media: the peer connection, the local sources, the sinks, and
        every task this session started."""
        if self._closed:
            return
        self._closed = True
        await self.pc.close()
        for track in (self.audio, self.video):
            if track is not None:
                track.stop()
        for sink in (self.audio_sink, self.video_sink):
            if sink is not None:
                with contextlib.suppress(Exception):
                    await sink.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
