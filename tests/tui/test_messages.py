"""Acting on messages from the TUI against real in-process Croft nodes (issue #7):
replies, edits, deletions, reactions, multi-line and formatted messages, attachments,
typing and read receipts, and a long timeline drawn line by line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from node.app import RunningNode
from tests.federation.nodes import Client, owner_pair
from tests.tui.conftest import chat, make_app, ready, timeline_text, until
from tui.app import CroftApp
from tui.screens.confirm import ConfirmScreen, ReactScreen
from tui.widgets import Composer, Timeline

SIZE = (100, 30)


def timeline(app: CroftApp) -> Timeline:
    return app.screen.query_one(Timeline)


async def messages(owner: Client, room: str) -> list[dict[str, Any]]:
    history = await owner.history(room, 50)
    return [e for e in reversed(history) if e["type"] in ("m.room.message", "m.reaction")]


async def pick(app: CroftApp, pilot: Any, text: str) -> None:
    """Move the timeline's cursor with up/down to the entry whose text is ``text``."""
    view = timeline(app)
    view.focus()
    target = view.texts().index(text)
    if view.cursor is None:
        await pilot.press("up")  # the cursor starts at the newest entry
    for _ in range(60):
        at = view.model.entries.index(view.cursor) if view.cursor else -1
        if at == target:
            return
        await pilot.press("up" if at > target else "down")
    raise AssertionError(f"cannot reach {text!r} in {view.texts()}")


async def test_reply_edit_and_edit_last(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Porch")
    first = await owner.send(room, "is the kettle on?")
    me = owner.user_id
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pick(app, pilot, f"{me}: is the kettle on?")
        await pilot.press("r")
        context = str(app.screen.query_one("#composer-context").render())
        assert "replying to" in context and "is the kettle on?" in context
        await pilot.press(*"it is", "enter")
        await until(pilot, lambda: f"{me}: it is" in timeline_text(app), "the reply")
        lines = timeline(app).screen_lines()
        at = lines.index(f"{me}: it is")  # under the quote, which has the time at its right
        assert re.fullmatch(rf"↳ {re.escape(me)}: is the kettle on\? +\d\d:\d\d", lines[at - 1])
        # Up in the empty composer edits the last message of one's own.
        await pilot.press("up")
        assert app.screen.query_one(Composer).text == "it is"
        await pilot.press("ctrl+u", *"it was", "enter")
        await until(pilot, lambda: f"{me}: it was (edited)" in timeline_text(app), "the edit")
        assert f"{me}: it is" not in timeline_text(app)
        # e on an entry edits it; Escape gives up.
        await pick(app, pilot, f"{me}: is the kettle on?")
        await pilot.press("e")
        assert app.screen.query_one(Composer).text == "is the kettle on?"
        await pilot.press("escape")
        assert app.screen.query_one(Composer).text == ""
    sent = await messages(owner, room)
    reply, edit = sent[1]["content"], sent[2]["content"]
    assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": first}}
    assert reply["m.mentions"] == {"user_ids": [me]}
    assert edit["m.new_content"] == {"msgtype": "m.text", "body": "it was"}
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": sent[1]["event_id"]}
    assert edit["body"] == "* it was"


async def test_delete_asks_first(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Porch")
    keep = await owner.send(room, "keep me")
    gone = await owner.send(room, "delete me")
    me = owner.user_id
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        await pick(app, pilot, f"{me}: delete me")
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # not now
        await pick(app, pilot, f"{me}: keep me")
        await pick(app, pilot, f"{me}: delete me")
        await pilot.press("delete", "y")
        await until(pilot, lambda: f"{me} · (message deleted)" in timeline_text(app), "deleted")
        assert "message deleted" in screen.said
    event = await owner.call("GET", f"/rooms/{quote(room)}/event/{quote(gone)}")
    assert event["content"] == {} and "redacted_because" in event["unsigned"]
    kept = await owner.call("GET", f"/rooms/{quote(room)}/event/{quote(keep)}")
    assert kept["content"]["body"] == "keep me"


async def test_react_and_take_it_back(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Porch")
    target = await owner.send(room, "cake!")
    me = owner.user_id
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pick(app, pilot, f"{me}: cake!")
        await pilot.press("plus")
        assert isinstance(app.screen, ReactScreen)
        await pilot.press("4")  # 🎉
        await until(pilot, lambda: "🎉 1" in "|".join(timeline(app).screen_lines()), "the reaction")
        await pilot.press("plus")
        await pilot.press(*"ok", "enter")
        await until(pilot, lambda: " 🎉 1    ok 1" in "|".join(timeline(app).screen_lines()), "ok")
        await pilot.press("plus", "4")  # again: taken back
        await until(
            pilot, lambda: "🎉" not in " ".join(timeline(app).screen_lines()), "reaction gone"
        )
    sent = await messages(owner, room)
    reactions = [e for e in sent if e["type"] == "m.reaction"]
    assert len(reactions) == 2
    assert reactions[0]["content"] == {}  # 🎉, taken back: redacted
    assert "redacted_because" in reactions[0]["unsigned"]
    rel = reactions[1]["content"]["m.relates_to"]
    assert rel == {"rel_type": "m.annotation", "event_id": target, "key": "ok"}


async def test_multi_line_and_formatted_messages(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Porch")
    me = owner.user_id
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press(*"shopping:", "alt+enter", *"- **milk**", "ctrl+j", *"- eggs", "enter")
        await until(pilot, lambda: any("eggs" in t for t in timeline_text(app)), "the message")
        assert f"{me}: shopping:\n- milk\n- eggs" in timeline_text(app)
    [sent] = await messages(owner, room)
    assert sent["content"]["body"] == "shopping:\n- **milk**\n- eggs"
    assert sent["content"]["format"] == "org.matrix.custom.html"
    assert sent["content"]["formatted_body"] == "shopping:<br>- <strong>milk</strong><br>- eggs"


async def test_attachment_listed_and_saved(
    node: RunningNode, owner: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = await owner.create_room(name="Porch")
    data = b"%PDF-1.4 not really\n" * 100
    headers = {"Authorization": f"Bearer {owner.token}", "Content-Type": "application/pdf"}
    async with owner.http.post(
        owner.url.replace("/_matrix/client/v3", "") + "/_matrix/media/v3/upload?filename=plan.pdf",
        data=data,
        headers=headers,
    ) as r:
        assert r.status == 200, await r.text()
        mxc = (await r.json())["content_uri"]
    content = {"msgtype": "m.file", "body": "plan.pdf", "url": mxc, "info": {"size": len(data)}}
    await owner.call("PUT", f"/rooms/{quote(room)}/send/m.room.message/f1", content)
    broken = {"msgtype": "m.file", "body": "lost.txt", "url": "mxc://nowhere.invalid/nothing"}
    await owner.call("PUT", f"/rooms/{quote(room)}/send/m.room.message/f2", broken)
    downloads = tmp_path / "downloads"
    monkeypatch.setenv("CROFT_DOWNLOADS", str(downloads))
    me = owner.user_id
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        assert f"{me}: 📎 plan.pdf (2.0 KB)" in timeline_text(app)
        await pick(app, pilot, f"{me}: 📎 plan.pdf (2.0 KB)")
        await pilot.press("s")
        await until(pilot, lambda: any(s.startswith("saved ") for s in screen.said), "saved")
        await pilot.press("s")  # again: a second name, the first file kept
        await until(pilot, lambda: len([s for s in screen.said if "saved" in s]) == 2, "again")
        await pick(app, pilot, f"{me}: 📎 lost.txt")
        await pilot.press("s")
        await until(pilot, lambda: any("cannot download" in s for s in screen.said), "refused")
    assert (downloads / "plan.pdf").read_bytes() == data
    assert (downloads / "plan (1).pdf").read_bytes() == data
    assert not (downloads / "lost.txt").exists()


async def test_typing_and_read_receipts_of_the_other_side(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b):
        room = await b.create_room(name="Chat", preset="public_chat")
        server_b = b.node.node.config.server_name
        await a.call("POST", f"/join/{quote(room)}?server_name={quote(server_b)}", {})
        await b.send(room, "hello a")
        app = make_app(a.node)
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(app, pilot)
            await until(pilot, lambda: f"{b.user_id}: hello a" in timeline_text(app), "b's")
            # B types: the line under the timeline says so, and goes when B stops.
            typing = {"typing": True, "timeout": 20_000}
            await b.call("PUT", f"/rooms/{quote(room)}/typing/{quote(b.user_id)}", typing)
            label = app.screen.query_one("#typing")
            await until(pilot, lambda: "is typing" in str(label.render()), "typing shown")
            assert str(label.render()) == f"{b.user_id} is typing…"
            await b.call(
                "PUT", f"/rooms/{quote(room)}/typing/{quote(b.user_id)}", {"typing": False}
            )
            await until(pilot, lambda: str(label.render()) == "", "typing gone")
            # A types in the TUI: B's /sync sees it.
            await pilot.press(*"writ")
            sync = await b.call("GET", "/sync?timeout=0")
            since = sync["next_batch"]
            for _ in range(40):
                typing_now = [
                    e["content"]["user_ids"]
                    for e in sync["rooms"]["join"]
                    .get(room, {})
                    .get("ephemeral", {})
                    .get("events", [])
                    if e["type"] == "m.typing"
                ]
                if typing_now and a.user_id in typing_now[-1]:
                    break
                sync = await b.call("GET", f"/sync?timeout=1000&since={since}")
                since = sync["next_batch"]
            else:
                raise AssertionError("B never saw A typing")
            # A sends; B reads it: A's screen shows B's receipt under that message.
            await pilot.press(*"ing done", "enter")
            await until(pilot, lambda: f"{a.user_id}: writing done" in timeline_text(app), "sent")
            event_id = screen.histories[room].newest_event_id()
            assert event_id is not None
            await arrived(b, room, event_id)
            await b.call("POST", f"/rooms/{quote(room)}/receipt/m.read/{quote(event_id)}", {})
            await until(
                pilot,
                lambda: f"  ✓ read by {b.user_id}" in timeline(app).screen_lines(),
                "b's receipt",
            )
            assert screen.histories[room].by_id[event_id].readers == [b.user_id]


async def arrived(client: Client, room: str, event_id: str) -> None:
    """Wait until ``client``'s node has ``event_id`` (federation brings it)."""
    for _ in range(100):
        path = f"/rooms/{quote(room)}/event/{quote(event_id)}"
        if "event_id" in await client.call("GET", path, status=None):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{event_id} never reached {client.user_id}'s node")


async def test_long_timeline_scrolls_and_keeps_its_place(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Archive")
    for i in range(120):
        await owner.send(room, f"line {i:03} " + "word " * (i % 25))
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        view = timeline(app)
        view.focus()
        while not screen.histories[room].complete:
            await pilot.press("home")
            await pilot.pause(0.05)
        texts = [t for t in view.texts() if "line" in t]
        assert len(texts) == 120 and texts[0].startswith(f"{owner.user_id}: line 000")
        # The virtual height is every entry's wrapped lines; only a screenful is drawn.
        assert view.virtual_size.height == len(view.screen_lines()) > 120
        # A message arriving while scrolled up does not move the view.
        view.scroll_to(y=10, animate=False, immediate=True)
        await pilot.pause()
        top = view.scroll_y
        await owner.send(room, "news while reading")
        await until(pilot, lambda: f"{owner.user_id}: news while reading" in view.texts(), "it")
        assert view.scroll_y == top
        await pilot.press("end")
        assert view.scroll_y == view.max_scroll_y
        assert chat(app).selected == room
