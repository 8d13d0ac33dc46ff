"""Pilot tests of the chat screen against a real in-process Croft node (issue #7)."""

from __future__ import annotations

from urllib.parse import quote

from node.app import RunningNode
from tests.federation.nodes import Client
from tests.tui.conftest import make_app, ready, room_labels, timeline_text, until
from tui.widgets import RoomList, Timeline

SIZE = (100, 30)


async def test_stored_token_lists_rooms_with_names(node: RunningNode, owner: Client) -> None:
    await owner.create_room(name="Garden")
    await owner.create_room(name="allotment")
    aliased = await owner.create_room(room_alias_name="shed")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        assert app.client.user_id == owner.user_id
        names = [label.lstrip("▌ ").split(" ")[0] for label in room_labels(app)]
        server = node.node.config.server_name
        assert names == ["#shed:" + server, "allotment", "Garden"]
        assert aliased in app.client.rooms
        # The first room is selected and marked.
        assert room_labels(app)[0].startswith("▌")


async def test_timeline_shows_display_names(node: RunningNode, owner: Client) -> None:
    await owner.call("PUT", f"/profile/{quote(owner.user_id)}/displayname", {"displayname": "Ally"})
    room = await owner.create_room(name="Kitchen")
    await owner.send(room, "the kettle is on")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        assert "Ally: the kettle is on" in timeline_text(app)
        assert "Ally joined" in timeline_text(app)


async def test_enter_sends_text_and_emote(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Porch")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press(*"hello from the tui", "enter")
        await pilot.press(*"/me waves", "enter")
        await until(
            pilot, lambda: f"* {owner.user_id} waves" in timeline_text(app), "the emote, via /sync"
        )
        assert f"{owner.user_id}: hello from the tui" in timeline_text(app)
    history = await owner.history(room, 10)
    messages = [e["content"] for e in history if e["type"] == "m.room.message"]
    assert messages[:2] == [
        {"msgtype": "m.emote", "body": "waves"},
        {"msgtype": "m.text", "body": "hello from the tui"},
    ]


async def test_unknown_command_is_not_sent(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Porch")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press(*"/frobnicate", "enter")
        await pilot.press("ctrl+u", *"after", "enter")  # ctrl+u: clear what is left
        await until(pilot, lambda: f"{owner.user_id}: after" in timeline_text(app), "after")
    history = await owner.history(room, 50)
    bodies = [e["content"]["body"] for e in history if e["type"] == "m.room.message"]
    assert bodies == ["after"]


async def test_message_from_another_session_appears(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Hall")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        # The owner's other session (a password login): the TUI's /sync long-poll wakes.
        await owner.send(room, "sent from elsewhere")
        await until(
            pilot,
            lambda: f"{owner.user_id}: sent from elsewhere" in timeline_text(app),
            "the message",
        )


async def test_scrollback_reaches_the_first_message(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Archive")
    for i in range(100):
        await owner.send(room, f"message {i:03}")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        texts = timeline_text(app)
        assert f"{owner.user_id}: message 099" in texts
        assert f"{owner.user_id}: message 000" not in texts  # not in the first sync
        app.screen.query_one(Timeline).focus()
        for _ in range(100):
            if f"{owner.user_id}: message 000" in timeline_text(app):
                break
            await pilot.press("home")
            await pilot.pause(0.05)
        texts = timeline_text(app)
        bodies = [t for t in texts if t.startswith(f"{owner.user_id}: message")]
        assert bodies == [f"{owner.user_id}: message {i:03}" for i in range(100)]
        assert app.screen.histories[room].complete  # the room's creation was reached


async def test_sensor_reading_renders_as_reading(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Greenhouse")
    reading = {"sensor_id": "cpu-temp", "value": "42.1", "unit": "°C", "ts": 1, "seq": 1}
    await owner.call("PUT", f"/rooms/{quote(room)}/send/io.croft.sensor.reading/r1", reading)
    await owner.call("PUT", f"/rooms/{quote(room)}/send/org.example.other/o1", {"x": 1})
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        texts = timeline_text(app)
        assert "📟 cpu-temp 42.1 °C" in texts
        assert f"{owner.user_id} · org.example.other" in texts


async def test_next_previous_room_and_help(node: RunningNode, owner: Client) -> None:
    first = await owner.create_room(name="A room")
    second = await owner.create_room(name="B room")
    await owner.send(second, "in B")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        assert screen.selected == first
        await pilot.press("ctrl+n")
        assert screen.selected == second
        assert f"{owner.user_id}: in B" in timeline_text(app)
        assert app.screen.query_one(RoomList).highlighted == 1
        await pilot.press("ctrl+p")
        assert screen.selected == first
        await pilot.press("f1")
        help_text = " ".join(str(s.render()) for s in app.screen.query(".binding"))
        assert "ctrl+q" in help_text and "ctrl+n / ctrl+p" in help_text
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("ctrl+q")
    assert app.return_code == 0


async def test_bad_token_exits_with_an_error(node: RunningNode) -> None:
    from tui.app import CroftApp
    from tui.session import Connection

    url = f"http://{node.listeners['client']}"
    app = CroftApp(Connection(url, token="not-a-token"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.error is not None, "the refusal")
    assert app.return_code == 2
    assert "refused the access token" in (app.error or "")
