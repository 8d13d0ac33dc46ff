"""Calls in the TUI (issue #8, must-show 4): a Pilot test drives a call from the TUI
against the headless agent, `croft call`, in the network lab.

Two `croft run` nodes in two host namespaces federate over the lab bridge. The TUI
(CroftApp on node 1's client API) runs its Pilot test on an event loop inside host 1's
namespace, so its aiortc gathers only there (restricted to the bridge address); the
other side is node 2's owner's `croft call` run with `ip netns exec` in host 2's
namespace: it answers (--auto-answer, playing a WAV file), then calls the TUI three
times (rejected; given up while ringing; answered, then hung up by the agent). No
sound devices exist on the test machines: the TUI says so.

The refusals (no other member, three members), the ICE servers and the video panel
need no media on the network: in-process nodes on loopback, a picture drawn from a
still frame.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import aiohttp
from textual.app import App
from textual.widgets import Static
from textual.worker import WorkerState

from node.app import RunningNode
from node.calls.audio import system_audio
from node.calls.controller import Call
from node.calls.video import LatestFrame, RgbImage
from node.config import VoipConfig
from tests.calls.conftest import NetnsLoop
from tests.calls.test_agent_lab import agent, two_nodes_in_a_room, write_pattern
from tests.discovery.lab import Lab, LabNode, lab_up, run_in_netns
from tests.federation.nodes import Client, croft_node
from tests.interop.users import invite_and_join
from tests.tui.conftest import make_app, ready, until
from tui.app import CroftApp
from tui.calls import NO_SOUND, CallOptions, TuiCalls
from tui.screens.call import CallScreen, IncomingCallScreen, duration
from tui.session import Connection

SIZE = (120, 40)
WITHIN = 60.0  # an agent's exit


class Agent:
    """A real `croft call` for node 2's owner, in host 2's namespace (ICE on its bridge
    address only); its stderr progress and stdout JSON lines are collected as they come."""

    def __init__(self, node: LabNode, room: str, *args: str) -> None:
        self.what = " ".join(["croft call", *args])
        self.proc = agent(node, room, *args, text=True)
        self.err: list[str] = []
        self.reports: list[dict[str, Any]] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: IO[str], json_lines: bool) -> None:
        for line in stream:
            if json_lines and line.startswith("{"):
                self.reports.append(json.loads(line))
            elif not json_lines:
                self.err.append(line.rstrip())

    def said(self, fragment: str) -> bool:
        return any(fragment in line for line in self.err)

    def ended(self, reason: str, by_us: bool) -> bool:
        return any((r["ended"], r["by_us"]) == (reason, by_us) for r in self.reports)

    async def exited(self) -> int:
        try:
            return await asyncio.to_thread(self.proc.wait, WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.what} did not exit:\n{self.log()}") from None

    def log(self) -> str:
        return "\n".join(self.err)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=5)


def status(app: CroftApp) -> str:
    return str(app.screen.query_one("#call-status", Static).render())


async def ringing(pilot: Any, app: CroftApp, agent: Agent) -> IncomingCallScreen:
    await until(pilot, lambda: agent.said("calling "), f"{agent.what}: calling")
    # Pushed is not yet drawn: wait for the dialog's widgets, not only the screen.
    await until(
        pilot,
        lambda: (
            isinstance(app.screen, IncomingCallScreen)
            and bool(app.screen.query("#incoming-caller"))
        ),
        "the dialog",
    )
    dialog = app.screen
    assert isinstance(dialog, IncomingCallScreen)
    return dialog


async def tui_side(
    app: CroftApp, room: str, node: LabNode, peer_id: str, tone: Path, agents: list[Agent]
) -> None:
    def start(*args: str) -> Agent:
        agents.append(Agent(node, room, *args))
        return agents[-1]

    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(app, pilot)
        room_of = app.client.rooms
        await until(pilot, lambda: chat.selected == room, "the shared room, shown")
        await until(pilot, lambda: peer_id in room_of[room].users, "the other owner, a member")
        pattern = tone.with_name("pattern.y4m")
        write_pattern(pattern)  # red above, blue below: a doorbell's camera
        callee = start(
            "--auto-answer", "--once", "--play", str(tone), "--record", "out.wav",
            "--video", str(pattern),
        )  # fmt: skip
        await until(pilot, lambda: callee.said("waiting for calls"), "the agent, waiting")

        # ctrl+k calls the room shown; the agent answers; no sound devices here.
        await pilot.press("ctrl+k")
        await until(pilot, lambda: isinstance(app.screen, CallScreen), "the call screen")
        screen = app.screen
        assert isinstance(screen, CallScreen)
        if not system_audio().available:  # as on the test machines
            assert NO_SOUND in chat.said
        call = screen.call
        assert call.outbound and call.peer == peer_id
        await until(pilot, lambda: call.state == "connected", "connected")
        await until(pilot, lambda: callee.said("connected in"), "the agent connected")
        await until(pilot, lambda: "connected · 00:02" in status(app), "the duration ticking")
        # The agent's file plays: its audio arrives here.
        assert call.media is not None
        await until(pilot, lambda: call.media.stats.frames > 50, "the agent's audio")  # type: ignore[union-attr]
        assert call.media.stats.sample_rate == 48000

        # Its video is drawn in half-block characters: red in the upper half of the
        # picture, blue in the lower (colours after the codec's round trip).
        await until(pilot, lambda: len(screen.video_lines) > 4, "the agent's video, drawn")
        lines = screen.video_lines
        for row, (r, b) in ((len(lines) // 4, (200, 60)), (3 * len(lines) // 4, (60, 200))):
            styles = [span.style for span in lines[row].spans]
            assert styles, f"row {row} of the video is empty"
            for style in styles:
                for colour in (style.color, style.bgcolor):  # type: ignore[union-attr]
                    rgb = colour.get_truecolor()
                    assert (rgb.red > r) if r > 100 else (rgb.red < r), (row, str(style))
                    assert (rgb.blue > b) if b > 100 else (rgb.blue < b), (row, str(style))

        await pilot.press("m")
        assert status(app).endswith("· muted")
        await pilot.press("m")
        assert "muted" not in status(app)

        # h hangs up: both sides end (the agent's report: ended by the other side).
        await pilot.press("h")
        await until(pilot, lambda: not isinstance(app.screen, CallScreen), "the screen closed")
        assert call.state == "ended" and call.ended_by_us
        await until(pilot, lambda: callee.ended("user_hangup", False), "the agent's call ended")
        assert await callee.exited() == 0  # --once
        assert any(s.endswith("ended: hung up") for s in chat.said)

        # The agent calls: the dialog shows who and where; r rejects; the caller sees it.
        caller = start("--tone", "440")
        dialog = await ringing(pilot, app, caller)
        who = str(dialog.query_one("#incoming-caller", Static).render())
        assert "alice" in who and "calling" in who
        assert "Doorbell" in str(dialog.query_one("#incoming-room", Static).render())
        await pilot.press("r")
        await until(pilot, lambda: caller.ended("rejected", False), "the caller saw the reject")
        assert await caller.exited() == 1  # not taken
        assert not isinstance(app.screen, IncomingCallScreen)
        assert not app.calls.active()

        # It calls and gives up while ringing: the dialog goes away by itself.
        caller = start("--tone", "440", "--ring-for", "2")
        await ringing(pilot, app, caller)
        await until(pilot, lambda: not isinstance(app.screen, IncomingCallScreen), "gone")
        assert await caller.exited() == 1
        assert caller.ended("invite_timeout", True)

        # And again: a answers, the call connects; the agent hangs up, the TUI ends too.
        caller = start("--tone", "440", "--hangup-after", "2")
        await ringing(pilot, app, caller)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, CallScreen), "the answered call")
        answered = app.screen
        assert isinstance(answered, CallScreen) and not answered.call.outbound
        await until(pilot, lambda: answered.call.state == "connected", "answered, connected")
        said = len(chat.said)
        await until(pilot, lambda: answered.call.state == "ended", "ended by the agent")
        assert not answered.call.ended_by_us
        await until(pilot, lambda: not isinstance(app.screen, CallScreen), "the screen closed")
        assert any(s.endswith("ended: hung up") for s in chat.said[said:])
        assert await caller.exited() == 0
        assert caller.ended("user_hangup", True)


def write_tone(path: Path, hz: float, seconds: float) -> None:
    rate = 48000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (
            int(12000 * math.sin(2 * math.pi * hz * k / rate)) for k in range(int(rate * seconds))
        )
        out.writeframes(b"".join(struct.pack("<h", v) for v in samples))


async def lab_scenario(lab: Lab, tmp_path: Path, tui_loop: NetnsLoop) -> None:
    agents: list[Agent] = []
    tone = tmp_path / "tone.wav"
    write_tone(tone, 880, 30)
    async with two_nodes_in_a_room(lab, tmp_path, "Doorbell") as (nodes, room):
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                tui_login = await nodes[0].login(http)
            connection = Connection(
                nodes[0].client_url, token=tui_login.token, store_dir=tmp_path / "tui-store"
            )
            app = CroftApp(
                connection,
                sync_timeout_ms=500,
                call_options=CallOptions(host_addresses=(lab.address(0),)),
            )
            try:
                await tui_loop.run(tui_side(app, room, nodes[1], nodes[1].user_id, tone, agents))
            except AssertionError:
                for agent in agents:
                    print(f"--- {agent.what} ---\n{agent.log()}")
                raise
        finally:
            for agent in agents:
                agent.stop()


def test_a_call_from_the_tui_to_croft_call(tmp_path: Path) -> None:
    started = time.monotonic()
    with lab_up(2, "calls from the TUI") as lab:
        tui_loop: NetnsLoop | None = None
        try:
            tui_loop = NetnsLoop(lab.hosts[0])
            run_in_netns(lab.name, lambda: lab_scenario(lab, tmp_path, tui_loop))
        finally:
            if tui_loop is not None:
                tui_loop.stop()
    print(f"\nthe TUI call test took {time.monotonic() - started:.1f} s")


# -- refusals: no media, in-process nodes on loopback ---------------------------------


async def press_call(app: CroftApp, pilot: Any, said: Callable[[], list[str]]) -> str:
    before = len(said())
    await pilot.press("ctrl+k")
    await until(pilot, lambda: len(said()) > before, "a message")
    return said()[-1]


async def test_call_needs_exactly_one_other_member(tmp_path: Path, node: RunningNode) -> None:
    async with (
        aiohttp.ClientSession() as http,
        croft_node(tmp_path, "b") as b,
        croft_node(tmp_path, "c") as c,
    ):
        owner, bob, carol = Client(http, node), Client(http, b), Client(http, c)
        for who in (owner, bob, carol):
            await who.login()
        alone = await owner.create_room(name="Alone")
        app = make_app(node)
        async with app.run_test(size=SIZE) as pilot:
            chat = await ready(app, pilot)
            await until(pilot, lambda: chat.selected == alone, "the room shown")
            message = await press_call(app, pilot, lambda: chat.said)
            assert message == (
                "cannot call: a call needs a room with exactly one other member (Alone has 0)"
            )
            trio = await owner.create_room(name="Trio")
            for guest in (bob, carol):
                await invite_and_join(owner, guest, trio, node.node.config.server_name)
            rooms = app.client.rooms
            await until(pilot, lambda: trio in rooms and len(rooms[trio].users) == 3, "3 in")
            chat.select(trio)
            await pilot.pause()
            message = await press_call(app, pilot, lambda: chat.said)
            assert message.endswith("(Trio has 2)") and "exactly one other member" in message
            # /call says the same; no call was made, no m.call.* event sent.
            count = len(chat.said)
            await pilot.press("ctrl+u", *"/call", "enter")
            await until(pilot, lambda: len(chat.said) > count, "/call refused")
            assert chat.said[-1] == message
            assert not app.calls.active() and not app.calls.controller.calls  # type: ignore[union-attr]
            events = await owner.messages(trio)
            assert not [e for e in events if e["type"].startswith("m.call.")]


# -- pure parts and the ICE servers ----------------------------------------------------


def test_duration_reads_as_a_clock() -> None:
    assert [duration(s) for s in (0, 2.7, 61, 3599, 3600, 3725)] == [
        "00:00",
        "00:02",
        "01:01",
        "59:59",
        "1:00:00",
        "1:02:05",
    ]


async def test_ice_servers_come_from_the_turn_server_endpoint(node: RunningNode) -> None:
    """No TURN configured: no ICE server at all (never a public STUN server); TURN
    configured: exactly the node's TURN server with its credentials."""
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await until(pilot, lambda: app.calls.controller is not None, "calls started")
        await app.calls.refresh_turn()
        assert app.calls.turn == []
        uri = "turn:turn.example.org:3478?transport=udp"
        config = node.node.config
        node.node.config = replace(
            config, voip=VoipConfig(turn_uris=(uri,), turn_shared_secret="secret")
        )
        try:
            await app.calls.refresh_turn()
        finally:
            node.node.config = config
        (turn,) = app.calls.turn
        assert turn["uris"] == [uri] and turn["username"].endswith(app.client.user_id)
        from node.calls.media import ice_servers

        (server,) = ice_servers(app.calls.turn)
        assert server.urls == [uri] and server.credential == turn["password"]


async def test_only_call_events_reach_the_controller(node: RunningNode) -> None:
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(app, pilot)
        queue = app.calls._queue
        assert queue is not None
        text = {"type": "m.room.message", "content": {"body": "hi"}}
        hangup = {"type": "m.call.hangup", "content": {}}
        chat.calls.feed("!r:x", [text])
        assert queue.empty()
        chat.calls.feed("!r:x", [text, hangup, {"content": 7}])
        # The controller takes them (odd ones are ignored) and goes on.
        await until(pilot, lambda: queue.empty(), "fed")
        await pilot.pause(0.2)
        (worker,) = [w for w in chat.workers if w.group == "calls"]
        assert worker.state == WorkerState.RUNNING
        assert not app.calls.active()
        # No room here: ctrl+k says so.
        await pilot.press("ctrl+k")
        await until(pilot, lambda: chat.said, "a message")
        assert chat.said[-1] == "/call needs a room: open one first"


class StillVideo:
    """Stands in for a call's media: its received video is one still picture."""

    def __init__(self, frame: RgbImage) -> None:
        self.video_sink = LatestFrame()
        self.video_sink.on_frame(frame)


async def test_the_call_screen_draws_the_video_and_ticks() -> None:
    red_over_blue = RgbImage(32, 24, bytes([255, 0, 0] * 32 * 12 + [0, 0, 255] * 32 * 12))
    call = Call("c1", "!r:x", outbound=True, peer="@bob:x", state="connected")
    call.connected_at = time.monotonic() - 61
    call.media = StillVideo(red_over_blue)  # type: ignore[assignment]
    calls = TuiCalls(None)  # type: ignore[arg-type]  (no controller: nothing to mute)

    class Host(App[None]):
        CSS_PATH = Path(__file__).parents[2] / "tui" / "app.tcss"

    app = Host()
    async with app.run_test(size=SIZE) as pilot:
        screen = CallScreen(calls, call, "Bob", "Porch")
        await app.push_screen(screen)
        await until(pilot, lambda: screen.video_lines, "the picture")
        assert "connected · 01:01" in status(app)
        lines = screen.video_lines
        assert all(set(line.plain) == {"▀"} for line in lines)
        top, bottom = lines[0].spans[0].style, lines[-1].spans[0].style
        assert top.color.triplet == (255, 0, 0) and bottom.bgcolor.triplet == (0, 0, 255)  # type: ignore[union-attr]
        # A new frame is drawn; the same one is not drawn twice.
        drawn = screen.drawn
        call.media.video_sink.on_frame(red_over_blue)  # type: ignore[union-attr]
        await until(pilot, lambda: screen.drawn == drawn + 1, "the next frame")
        await pilot.press("m")  # no call to mute any more: a message, no crash
        await until(pilot, lambda: "connected · 01:0" in status(app), "still shown")
        call.state = "ended"
        await until(pilot, lambda: app.screen is not screen, "closed when the call ends")
