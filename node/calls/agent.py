"""`croft call`: a headless call on the local node, for devices without a screen (a
doorbell that calls, an intercom that answers).

It is a device of the owner of its own (``CROFTCALL``, node/calls/client.py), follows
/sync for m.call.* events, and runs the calls through the same
:class:`~node.calls.controller.CallController` as the TUI. It loads aiohttp and aiortc,
no Textual and no matrix-nio.

- ``croft call ROOM``: places a call in ROOM and stays in it until it ends (the other
  side hangs up, ``--hangup-after`` passes, or Ctrl+C hangs up).
- ``croft call ROOM --auto-answer``: answers the calls that ring in ROOM (any room with
  ``ROOM`` = ``*``), one after another; ``--once`` stops after the first.
- What it sends: ``--play FILE`` (anything FFmpeg reads), else ``--tone HZ``, else the
  system's microphone where there is one, else silence; and video with ``--video FILE``
  (looped) or ``--camera DEVICE`` (v4l2, e.g. /dev/video0). What it receives: ``--record
  FILE`` (WAV ...), else the system's speakers where there are any; it is always measured
  (the audio's frequency and level, the video frames counted).

Progress goes to stderr, one line per step; at the end of each call one JSON line to
stdout: the call's ID, how it ended, setup time (invite to media up), time to the first
audio frame, the received audio's dominant frequency and level, CPU and memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from node.calls.client import CallClient, CallClientError, call_token, room_events
from node.calls.controller import Call, CallChange, CallController, CallError

log = logging.getLogger(__name__)

SYNC_TIMEOUT_MS = 10_000
RETRY_S = 2.0
ANY_ROOM = "*"


@dataclass
class AgentOptions:
    room: str
    auto_answer: bool = False
    once: bool = False
    play: Path | None = None
    tone_hz: float | None = None
    video: Path | None = None  # a video file to send (looped)
    camera: str | None = None  # a camera device to send, e.g. /dev/video0 (v4l2)
    record: Path | None = None
    hangup_after_s: float | None = None
    ice_addresses: list[str] | None = None
    lifetime_ms: int = 60_000


@dataclass
class CallReport:
    """What one call measured (the JSON line)."""

    call_id: str
    room_id: str
    outbound: bool
    ended: str = ""
    by_us: bool = False
    setup_ms: float | None = None  # placed or answered -> media connected
    first_audio_ms: float | None = None  # placed or answered -> first audio frame
    seconds: float = 0.0  # connected time
    received_audio_s: float = 0.0
    video_frames: int = 0  # video frames received
    video_size: str | None = None  # of the last one, "WxH"
    frequency_hz: float | None = None
    level_dbfs: float | None = None
    cpu_s: float = 0.0
    max_rss_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class AgentError(Exception):
    """The agent cannot run; one line for the user."""


class CallAgent:
    def __init__(
        self,
        client: CallClient,
        user_id: str,
        options: AgentOptions,
        err: TextIO = sys.stderr,
        out: TextIO = sys.stdout,
    ) -> None:
        self.client = client
        self.options = options
        self.err, self.out = err, out
        self.turn: dict[str, Any] = {}
        self.room_id: str | None = None
        self.controller = CallController(
            user_id, self._send, self._media_for, self._observe, lifetime_ms=options.lifetime_ms
        )
        self.analyzers: dict[str, Any] = {}
        self.videos: dict[str, Any] = {}  # call_id -> LatestFrame of what it receives
        self.started: dict[str, float] = {}  # call_id -> monotonic start (placed/answered)
        self.reports: list[CallReport] = []
        self.done = asyncio.Event()  # the agent's work is over
        self._cpu0 = _cpu_s()
        self._tasks: set[asyncio.Task[Any]] = set()

    def say(self, line: str) -> None:
        print(f"croft call: {line}", file=self.err, flush=True)

    # -- the controller's three hooks ---------------------------------------------------

    async def _send(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        await self.client.send(room_id, event_type, content)

    def _media_for(self, call: Call) -> Any:
        from node.calls import audio
        from node.calls.media import MediaSession
        from node.calls.tracks import FanOut
        from node.calls.video import LatestFrame

        o = self.options
        system = None
        if o.play is not None:
            source = audio.file_source(o.play)
        elif o.tone_hz is not None:
            source = audio.ToneTrack(o.tone_hz)
        else:
            system = audio.system_audio()
            if system.available:
                source = system.player()
            else:
                self.say(f"nothing to send ({system.reason}): sending silence")
                source = audio.ToneTrack(440.0, amplitude=0.0)
        video = self._video_source()
        watcher = LatestFrame()
        self.videos[call.call_id or "placing"] = watcher
        analyzer = audio.AudioAnalyzer(window=0.5)
        self.analyzers[call.call_id or "placing"] = analyzer
        sinks: list[Any] = [analyzer]
        if o.record is not None:
            sinks.append(audio.RecorderSink(o.record))
        elif system is not None and system.available:
            sinks.append(system.recorder())
        self.started.setdefault(call.call_id or "placing", time.monotonic())
        return MediaSession(
            turn=[self.turn] if self.turn.get("uris") else [],
            audio=source,
            audio_sink=FanOut(sinks) if len(sinks) > 1 else analyzer,
            video=video,
            video_sink=watcher,
            host_addresses=o.ice_addresses,
        )

    def _video_source(self) -> Any:
        """The video to send: ``--video FILE`` (looped) or ``--camera DEVICE``; None."""
        import av
        from aiortc.contrib.media import MediaPlayer

        o = self.options
        try:
            if o.video is not None:
                player = MediaPlayer(str(o.video), loop=True)
                what = str(o.video)
            elif o.camera is not None:
                player = MediaPlayer(o.camera, format="v4l2", options={"video_size": "640x480"})
                what = o.camera
            else:
                return None
        except (OSError, av.FFmpegError) as e:
            raise AgentError(f"cannot open {o.video or o.camera}: {e}") from None
        if player.video is None:
            raise AgentError(f"{what}: no video in it")
        return player.video

    def _observe(self, change: CallChange) -> None:
        call = change.call
        who = call.peer or "the other side"
        if change.kind == "ringing":
            if self.options.auto_answer and self._wanted(call.room_id):
                self.say(f"{who} is calling in {call.room_id}: answering")
                self._spawn(self._answer(call.call_id))
            else:
                self.say(f"{who} is calling in {call.room_id} (not answered here)")
        elif change.kind == "calling":
            self.say(f"calling {call.room_id} (call {call.call_id})")
        elif change.kind == "connecting":
            self.say("answered: connecting the media")
        elif change.kind == "connected":
            start = self.started.get(call.call_id, call.placed_at)
            self.say(f"connected in {1000 * (time.monotonic() - start):.0f} ms")
            if self.options.hangup_after_s is not None:
                self._spawn(self._hangup_later(call.call_id, self.options.hangup_after_s))
        elif change.kind == "problem":
            self.say(f"problem: {change.detail}")
        elif change.kind == "ended":
            self._report(call)

    # -- running ------------------------------------------------------------------------

    def _wanted(self, room_id: str) -> bool:
        return self.options.room == ANY_ROOM or room_id == self.room_id

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, call_id: str) -> None:
        self.started[call_id] = time.monotonic()
        try:
            await self.controller.answer(call_id)
        except (CallError, AgentError) as e:
            self.say(f"cannot answer: {e}")

    async def _hangup_later(self, call_id: str, after_s: float) -> None:
        await asyncio.sleep(after_s)
        try:
            await self.controller.hangup(call_id)
        except CallError:
            pass

    async def run(self) -> int:
        """Place or wait for calls until the work is over; the exit status."""
        o = self.options
        try:
            if o.room != ANY_ROOM:
                self.room_id = await self.client.resolve_room(o.room)
            self.turn = await self.client.turn_servers()
            since = (await self.client.sync(None, 0)).get("next_batch")  # from now on
        except CallClientError as e:
            raise AgentError(str(e)) from None
        ticks = asyncio.ensure_future(self.controller.run_ticks())
        syncing = asyncio.ensure_future(self._sync_loop(since))
        try:
            if not o.auto_answer:
                assert self.room_id is not None
                self.started["placing"] = time.monotonic()
                try:
                    call = await self.controller.place(self.room_id)
                except CallClientError as e:
                    raise AgentError(f"cannot place the call: {e}") from None
                self.started[call.call_id] = self.started.pop("placing")
                if "placing" in self.analyzers:
                    self.analyzers[call.call_id] = self.analyzers.pop("placing")
                if "placing" in self.videos:
                    self.videos[call.call_id] = self.videos.pop("placing")
            else:
                where = "any room" if o.room == ANY_ROOM else self.room_id
                self.say(f"waiting for calls in {where}")
            await self.done.wait()
        finally:
            ticks.cancel()
            syncing.cancel()
            await self.controller.close()
            for task in list(self._tasks):
                task.cancel()
        if o.auto_answer:
            return 0
        # Placed: 0 once the call was taken; 1 when it was not (rejected, unanswered).
        return 0 if self.reports and self.reports[-1].setup_ms is not None else 1

    async def _sync_loop(self, since: str | None) -> None:
        while True:
            try:
                sync = await self.client.sync(since, SYNC_TIMEOUT_MS)
            except CallClientError as e:
                self.say(f"sync failed: {e}; again in {RETRY_S:.0f} s")
                await asyncio.sleep(RETRY_S)
                continue
            since = sync.get("next_batch") or since
            by_room: dict[str, list[dict[str, Any]]] = {}
            for room_id, event in room_events(sync):
                by_room.setdefault(room_id, []).append(event)
            for room_id, events in by_room.items():
                await self.controller.on_room_events(room_id, events)

    def _report(self, call: Call) -> None:
        from node.calls.audio import dbfs

        start = self.started.get(call.call_id, call.placed_at)
        analyzer = self.analyzers.get(call.call_id)
        media = call.media
        report = CallReport(call.call_id, call.room_id, call.outbound)
        report.ended, report.by_us = call.ended_reason or "", call.ended_by_us
        if call.connected_at is not None:
            report.setup_ms = round(1000 * (call.connected_at - start), 1)
            report.seconds = round(time.monotonic() - call.connected_at, 2)
        first = media.first_audio_at if media is not None else None
        if first is None and analyzer is not None:
            first = analyzer.first_frame_at
        if first is not None:
            report.first_audio_ms = round(1000 * (first - start), 1)
        if analyzer is not None:
            report.received_audio_s = round(analyzer.seconds, 2)
            report.frequency_hz = _round(analyzer.frequency())
            level = analyzer.level()
            report.level_dbfs = round(dbfs(level), 1) if level > 0 else None
        video = self.videos.get(call.call_id)
        if video is not None and video.frames:
            report.video_frames = video.frames
            frame = video.frame
            report.video_size = f"{frame.width}x{frame.height}" if frame is not None else None
        report.cpu_s = round(_cpu_s() - self._cpu0, 2)
        report.max_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.reports.append(report)
        side = "we" if call.ended_by_us else "they"
        self.say(f"ended: {report.ended} ({side} ended it) after {report.seconds:.1f} s")
        print(json.dumps(report.__dict__, sort_keys=True), file=self.out, flush=True)
        if call.ended_reason == "replaced":
            return  # glare: the call that replaced it goes on
        if not self.options.auto_answer or self.options.once:
            self.done.set()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_agent(data_dir: Path, options: AgentOptions) -> int:
    """`croft call` on the node of ``data_dir`` (which must be running)."""
    from node.config import load_config
    from node.datadir import LocalNodeError, running_client

    config = load_config(data_dir)
    try:
        url, owner_token = running_client(data_dir)
    except LocalNodeError as e:
        raise AgentError(str(e)) from None
    async with aiohttp.ClientSession() as http:
        try:
            who = await CallClient(url, owner_token, http).whoami()
        except CallClientError as e:
            raise AgentError(str(e)) from None
        token = await call_token(data_dir, config.database_path, who.user_id)
        agent = CallAgent(CallClient(url, token, http), who.user_id, options)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        work = asyncio.ensure_future(agent.run())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            agent.say("stopping: hanging up")
            agent.done.set()
        stopping.cancel()
        return await work
