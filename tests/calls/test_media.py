"""MediaSession between two lab namespaces: audio both ways, trickled candidates,
renegotiation, mute, clean close (node/calls/media.py).

Each side runs on its own event loop inside its own host namespace (tests/calls/
conftest.py); aioice only ever sees the lab's veth addresses.
"""

from __future__ import annotations

import asyncio
import resource
import time
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from node.calls.audio import AudioAnalyzer, ToneTrack, dbfs
from node.calls.media import MediaSession, ice_servers, sdp_candidates, strip_candidates
from node.calls.video import LatestFrame, half_block_cells
from tests.calls.conftest import NetnsLoop, until
from tests.discovery.lab import Lab

AMPLITUDE = 0.5  # peak; RMS -9 dBFS


async def make(peer: NetnsLoop, frequency: float, address: str) -> MediaSession:
    async def build() -> MediaSession:
        return MediaSession(
            [],
            audio=ToneTrack(frequency, AMPLITUDE),
            audio_sink=AudioAnalyzer(window=0.2),
            host_addresses=[address],
        )

    return await peer.run(build())


def analyzer(session: MediaSession) -> AudioAnalyzer:
    sink = session.audio_sink
    assert isinstance(sink, AudioAnalyzer)
    return sink


async def hears(session: MediaSession, frequency: float, what: str) -> None:
    """The session's analyzer has at least 0.5 s of audio whose recent window is a tone
    of ``frequency`` at about the sent level."""
    sink = analyzer(session)
    await until(lambda: sink.seconds >= 0.5, f"{what}: 0.5 s of audio")
    measured, level = sink.frequency(), sink.level()
    assert measured is not None and abs(measured - frequency) < 5, (what, measured)
    assert abs(dbfs(level) - dbfs(AMPLITUDE / 2**0.5)) < 3, (what, dbfs(level))


async def close_both(peers: tuple[NetnsLoop, NetnsLoop], *sessions: MediaSession) -> None:
    for peer, session in zip(peers, sessions, strict=True):
        await peer.run(session.close())
    for peer in peers:
        await until(lambda peer=peer: not peer.leftover_tasks(), f"no tasks left in {peer.netns}")


async def test_audio_flows_both_ways(lab: Lab, peers: tuple[NetnsLoop, NetnsLoop]) -> None:
    a_loop, b_loop = peers
    a = await make(a_loop, 440, lab.address(0))
    b = await make(b_loop, 880, lab.address(1))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_before = time.monotonic()
    try:
        offer = await a_loop.run(a.create_offer())
        # Only the allowed address was gathered (not the control link 10.98.x.x).
        assert {c["candidate"].split()[4] for c in sdp_candidates(offer)} == {lab.address(0)}
        answer = await b_loop.run(b.accept_offer(offer))
        await a_loop.run(a.accept_answer(answer))
        await a_loop.run(a.wait_connected())
        await b_loop.run(b.wait_connected())
        assert a.state == b.state == "connected"

        await hears(a, 880, "caller hears the callee")
        await hears(b, 440, "callee hears the caller")
        assert a.first_audio_at is not None and a.started_at is not None
        print(
            f"\noffer to first audio frame: caller {1000 * (a.first_audio_at - a.started_at):.0f}"
            f" ms, callee (from offer received) {1000 * (b.first_audio_at - b.started_at):.0f} ms"
        )
        assert a.stats.frames > 0 and a.stats.sample_rate == 48000
        assert a.stats.seconds >= 0.5

        # Mute: the peer receives silence, still as a stream; unmute: the tone again.
        a.mute()  # a plain flag, read by the sending loop
        await until(lambda: analyzer(b).level() < 0.001, "silence while muted")
        assert analyzer(b).frequency() is None
        a.unmute()
        await until(lambda: analyzer(b).level() > 0.2, "the tone after unmute")

        # Steady state, for the record (not asserted): CPU of both peers in this process.
        steady = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(2.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = after.ru_utime + after.ru_stime - steady.ru_utime - steady.ru_stime
        print(
            f"steady call, both peers (Opus both ways + analyzers): {used / 2.0:.0%} of one CPU;"
            f" max RSS {after.ru_maxrss / 1024:.0f} MB"
        )
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
        wall = time.monotonic() - wall_before
        print(f"CPU, whole test (both peers): {cpu:.2f} s over {wall:.2f} s = {cpu / wall:.0%}")
        await close_both(peers, a, b)
    assert a.state == b.state == "closed"


async def test_trickled_candidates(lab: Lab, peers: tuple[NetnsLoop, NetnsLoop]) -> None:
    a_loop, b_loop = peers
    a = await make(a_loop, 1000, lab.address(0))
    b = await make(b_loop, 500, lab.address(1))
    try:
        offer = await a_loop.run(a.create_offer())
        trickled = a.local_candidates()
        assert trickled and all(c["candidate"].startswith("candidate:") for c in trickled)
        assert {c["sdpMid"] for c in trickled} == {"0"}
        bare = strip_candidates(offer)
        assert "a=candidate" not in bare
        # Early candidates (before the offer is taken) are kept until it is.
        await b_loop.run(b.add_remote_candidates(trickled[:1]))
        answer = await b_loop.run(b.accept_offer(bare))
        await b_loop.run(b.add_remote_candidates([*trickled[1:], {"candidate": "x"}]))
        await b_loop.run(
            b.add_remote_candidates([{"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}])
        )
        # The answer's candidates go the other way by trickling too.
        await a_loop.run(a.accept_answer(strip_candidates(answer)))
        await a_loop.run(a.add_remote_candidates(b.local_candidates()))
        await a_loop.run(a.wait_connected())
        ice = b.pc.getTransceivers()[0].receiver.transport.transport
        assert lab.address(0) in {c.ip for c in ice.getRemoteCandidates()}
        await hears(b, 1000, "callee hears the caller over trickled candidates")
        await hears(a, 500, "caller hears the callee over trickled candidates")
    finally:
        await close_both(peers, a, b)


async def test_renegotiation_keeps_audio(lab: Lab, peers: tuple[NetnsLoop, NetnsLoop]) -> None:
    a_loop, b_loop = peers
    a = await make(a_loop, 600, lab.address(0))
    b = await make(b_loop, 700, lab.address(1))
    try:
        answer = await b_loop.run(b.accept_offer(await a_loop.run(a.create_offer())))
        await a_loop.run(a.accept_answer(answer))
        await b_loop.run(b.wait_connected())
        # The callee renegotiates (m.call.negotiate), the caller answers it.
        offer = await b_loop.run(b.renegotiate())
        reply = await a_loop.run(a.accept_renegotiation(offer, "offer"))
        assert reply is not None
        assert await b_loop.run(b.accept_renegotiation(reply, "answer")) is None
        assert b.pc.signalingState == a.pc.signalingState == "stable"
        before = analyzer(a).seconds
        await until(lambda: analyzer(a).seconds > before + 0.5, "audio after renegotiation")
        await hears(a, 700, "caller after renegotiation")
        await hears(b, 600, "callee after renegotiation")
    finally:
        await close_both(peers, a, b)


class Bars(MediaStreamTrack):
    """160 x 120 video, red over blue, 15 frames a second."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.pts = 0
        picture = bytes([255, 0, 0] * 160 * 60 + [0, 0, 255] * 160 * 60)
        rgb = av.VideoFrame(160, 120, "rgb24")
        stride = rgb.planes[0].line_size
        rgb.planes[0].update(
            b"".join(picture[y * 480 : (y + 1) * 480].ljust(stride, b"\0") for y in range(120))
        )
        self.frame = rgb.reformat(format="yuv420p")

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(1 / 15)
        frame = self.frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = self.pts, Fraction(1, 90000)
        self.pts += 6000
        return frame


async def test_video_added_by_renegotiation(lab: Lab, peers: tuple[NetnsLoop, NetnsLoop]) -> None:
    a_loop, b_loop = peers
    a = await make(a_loop, 440, lab.address(0))

    async def build() -> MediaSession:
        return MediaSession(
            [], audio=ToneTrack(880, AMPLITUDE), audio_sink=AudioAnalyzer(),
            video_sink=LatestFrame(), host_addresses=[lab.address(1)],
        )  # fmt: skip

    b = await b_loop.run(build())
    try:
        answer = await b_loop.run(b.accept_offer(await a_loop.run(a.create_offer())))
        assert "m=video" not in answer
        await a_loop.run(a.accept_answer(answer))
        await a_loop.run(a.wait_connected())
        assert await a_loop.run(a.set_video(Bars())) is True
        offer = await a_loop.run(a.renegotiate())
        assert "m=video" in offer
        reply = await b_loop.run(b.accept_renegotiation(offer, "offer"))
        assert reply is not None
        await a_loop.run(a.accept_renegotiation(reply, "answer"))
        sink = b.video_sink
        assert isinstance(sink, LatestFrame)
        await until(lambda: sink.frames >= 3, "video frames after renegotiation")
        lines = half_block_cells(sink.frame, cols=16, rows=6)
        top, bottom = lines[0][8], lines[-1][8]
        assert top[1][0] > 200 and top[1][2] < 60, top  # red
        assert bottom[2][2] > 200 and bottom[2][0] < 60, bottom  # blue
        await hears(b, 440, "audio still flows with video")
    finally:
        await close_both(peers, a, b)


def test_ice_servers_come_only_from_the_turn_server_response() -> None:
    assert ice_servers([]) == []
    turn = {
        "uris": ["turn:turn.example.org:3478?transport=udp", "https://not.ice", 7],
        "username": "1443779631:@user:example.com",
        "password": "JlKfBy1QwLrO20385QyAtEyIv0=",
        "ttl": 86400,
    }
    (server,) = ice_servers([turn, {"uris": []}])
    assert server.urls == ["turn:turn.example.org:3478?transport=udp"]
    assert (server.username, server.credential) == (turn["username"], turn["password"])


async def test_no_default_public_stun() -> None:
    """Without TURN servers aioice has no STUN server at all (aiortc's default would be
    a public one). Nothing is gathered: no offer is made."""
    turn = {"uris": ["turn:turn.example.org:3478"], "username": "u", "password": "p"}
    for servers, stun, relay in (([], None, None), ([turn], None, ("turn.example.org", 3478))):
        session = MediaSession(servers)
        try:
            transceiver = session.pc.addTransceiver("audio")
            ice = transceiver.sender.transport.transport.iceGatherer._connection
            assert (ice.stun_server, ice.turn_server) == (stun, relay)
        finally:
            await session.close()


def test_candidates_from_sdp_by_m_line() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:0",
            "a=candidate:1 1 udp 2130706431 10.99.0.1 40000 typ host",
            "a=end-of-candidates",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=candidate:2 1 udp 2130706431 10.99.0.1 40002 typ host",
            "a=mid:1",
        ]
    )
    assert sdp_candidates(sdp) == [
        {"candidate": "candidate:1 1 udp 2130706431 10.99.0.1 40000 typ host",
         "sdpMid": "0", "sdpMLineIndex": 0},
        {"candidate": "candidate:2 1 udp 2130706431 10.99.0.1 40002 typ host",
         "sdpMid": "1", "sdpMLineIndex": 1},
    ]  # fmt: skip
    assert "candidate" not in strip_candidates(sdp) and "a=mid:1" in strip_candidates(sdp)
