"""Snapshot tests of the TUI's main screens (issue #7): each screen, drawn by the real
app against a real in-process node, is exported as SVG (``App.export_screenshot``: the
text, layout and colours) and compared with tests/tui/snapshots/NAME.svg.

The node has a fixed server name and the seeded room fixed content, so the picture is
the same on every run. After an intended change of the look, regenerate with
``UPDATE_TUI_SNAPSHOTS=1 pytest tests/tui/test_snapshots.py`` and look at the SVGs
(any browser shows them) and the .txt diffs before committing them. On a mismatch the new picture is
written next to the test's temporary files and its path is in the failure.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from rich.console import Console

from node.app import RunningNode, serve
from node.config import load_config
from node.datadir import init_data_dir
from tests.federation.nodes import OWNER, PASSWORD, Client
from tests.tui.conftest import make_app, ready, until
from tui.app import CroftApp
from tui.widgets import Composer, Timeline
from tui.widgets import timeline as timeline_widget

SNAPSHOTS = Path(__file__).with_name("snapshots")
SIZE = (110, 32)
SERVER = "croft.test"  # fixed: user IDs are drawn


@pytest.fixture
async def snap_node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    d = tmp_path / "snap"
    await asyncio.to_thread(
        init_data_dir,
        d,
        server_name=SERVER,
        owner=OWNER,
        password=PASSWORD,
        client_listen="127.0.0.1:0",
        federation_listen="127.0.0.1:0",
    )
    running = await serve(load_config(d, environ={}))
    try:
        yield running
    finally:
        await running.stop()


async def seed(node: RunningNode) -> str:
    """Two rooms; in "Garden" one of each kind of message. The Garden room's ID."""
    async with aiohttp.ClientSession() as http:
        me = Client(http, node)
        await me.login()
        profile = f"/profile/{quote(me.user_id)}/displayname"
        await me.call("PUT", profile, {"displayname": "Ally"})
        await me.create_room(name="Workshop", topic="tools")
        room = await me.create_room(name="Garden", topic="tomatoes and beans")
        path = f"/rooms/{quote(room)}/send"
        question = await me.send(room, "Are the tomatoes ripe?")
        await me.call(
            "PUT",
            f"{path}/m.room.message/snap1",
            {
                "msgtype": "m.text",
                "body": "Yes, **three** of them",
                "format": "org.matrix.custom.html",
                "formatted_body": "Yes, <strong>three</strong> of them, <em>finally</em>",
                "m.relates_to": {"m.in_reply_to": {"event_id": question}},
            },
        )
        typo = await me.send(room, "Picking them tomorow")
        await me.call(
            "PUT",
            f"{path}/m.room.message/snap2",
            {
                "msgtype": "m.text",
                "body": "* Picking them tomorrow",
                "m.new_content": {"msgtype": "m.text", "body": "Picking them tomorrow"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": typo},
            },
        )
        rel = {"rel_type": "m.annotation", "event_id": question, "key": "🍅"}
        await me.call("PUT", f"{path}/m.reaction/snap3", {"m.relates_to": rel})
        await me.call(
            "PUT",
            f"{path}/m.room.message/snap4",
            {
                "msgtype": "m.file",
                "body": "planting-plan.pdf",
                "url": f"mxc://{SERVER}/plan",
                "info": {"size": 48_213},
            },
        )
        await me.call(
            "PUT", f"{path}/m.room.message/snap5", {"msgtype": "m.emote", "body": "waters"}
        )
        reading = {"sensor_id": "soil-moisture", "value": "41.5", "unit": "%", "ts": 1, "seq": 1}
        await me.call("PUT", f"{path}/io.croft.sensor.reading/snap6", reading)
        await me.send(room, "Two lines:\nthe second one")
        return room


async def settle(app: CroftApp, pilot: Any) -> None:
    """Let the screen reach rest: no toasts, no blinking cursor, pending layout done."""
    await pilot.pause()
    app.clear_notifications()
    for composer in app.query(Composer):
        composer.cursor_blink = False
    await pilot.pause(0.2)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def screen_text(app: CroftApp) -> str:
    """The screen as plain text, as a terminal shows it: readable in a diff."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO())
    console.begin_capture()
    console.print(app.screen._compositor.render_update(full=True))
    return "\n".join(line.rstrip() for line in console.end_capture().splitlines()) + "\n"


def check(app: CroftApp, name: str, tmp_path: Path) -> None:
    """Compare the SVG (colours included) and the plain text of the screen."""
    for suffix, shot in ((".svg", app.export_screenshot(title=name)), (".txt", screen_text(app))):
        expected = SNAPSHOTS / f"{name}{suffix}"
        if os.environ.get("UPDATE_TUI_SNAPSHOTS"):
            expected.parent.mkdir(exist_ok=True)
            expected.write_text(shot, "utf-8")
            continue
        if not expected.exists():
            pytest.fail(f"no snapshot {expected}: run with UPDATE_TUI_SNAPSHOTS=1 to make it")
        if expected.read_text("utf-8") != shot:
            actual = tmp_path / f"{name}.actual{suffix}"
            actual.write_text(shot, "utf-8")
            pytest.fail(f"{name} looks different: compare {actual} with {expected}")


Step = Callable[[CroftApp, Any], Awaitable[None]]


async def nothing(app: CroftApp, pilot: Any) -> None:
    return None


async def members_and_light(app: CroftApp, pilot: Any) -> None:
    app.theme = "textual-light"
    await pilot.press("f2")


async def help_screen(app: CroftApp, pilot: Any) -> None:
    await pilot.press("f1")


async def create_room(app: CroftApp, pilot: Any) -> None:
    await pilot.press("ctrl+o")


async def reply_to_a_message(app: CroftApp, pilot: Any) -> None:
    app.screen.query_one(Timeline).focus()
    await pilot.press("up", "up", "up", "up", "up")
    await pilot.press("r")


async def react(app: CroftApp, pilot: Any) -> None:
    app.screen.query_one(Timeline).focus()
    await pilot.press("up", "plus")


SCREENS: list[tuple[str, Step]] = [
    ("chat_dark", nothing),
    ("chat_light_members", members_and_light),
    ("help", help_screen),
    ("create_room", create_room),
    ("reply_mode", reply_to_a_message),
    ("react_dialog", react),
]


@pytest.mark.parametrize(("name", "step"), SCREENS, ids=[name for name, _ in SCREENS])
async def test_snapshot(
    snap_node: RunningNode, tmp_path: Path, name: str, step: Step, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one thing that changes from run to run: when the events were sent.
    monkeypatch.setattr(timeline_widget, "clock", lambda event, now=None: "12:00")
    await seed(snap_node)
    app = make_app(snap_node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        await until(pilot, lambda: screen.selected is not None, "a room")  # Garden: first
        await until(
            pilot,
            lambda: any("the second one" in t for t in app.screen.query_one(Timeline).texts()),
            "the last message",
        )
        # The first page of older history (fetched when a room opens with few events)
        # has come: the header reads "the start of the room" in every picture.
        await until(pilot, lambda: screen.histories[screen.selected or ""].complete, "the start")
        await step(app, pilot)
        await settle(app, pilot)
        check(app, name, tmp_path)
