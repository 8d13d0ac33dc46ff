"""Composer commands and local echo against a real in-process Croft node (issue #7):
each command's effect is read back through the node's client API."""

from __future__ import annotations

from urllib.parse import quote

from textual.widgets import Label

from node.app import RunningNode
from tests.federation.nodes import Client
from tests.tui.conftest import make_app, ready, room_labels, timeline_text, until
from tui.commands import parse_command
from tui.widgets import Composer, Timeline

SIZE = (100, 30)


def title(app: object) -> str:
    return str(app.screen.query_one("#room-title", Label).render())  # type: ignore[attr-defined]


async def command(pilot: object, text: str) -> None:
    await pilot.press("ctrl+u", *text, "enter")  # type: ignore[attr-defined]


def test_parse_command_checks_arguments() -> None:
    assert parse_command("/join #porch:a.test").arg == "#porch:a.test"
    assert parse_command("/topic  tea at four ").arg == "tea at four"
    for bad in ("/join porch", "/invite bob", "/topic", "/nick ", "/frob x"):
        try:
            parse_command(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


async def test_topic_and_nick(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Porch")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        await command(pilot, "/topic tea at four")
        await until(pilot, lambda: "topic set" in screen.said, "the topic")
        await command(pilot, "/nick Ally")
        await until(pilot, lambda: "you are now Ally" in screen.said, "the name")
        # Senders are shown by their current display name, once the member event is in.
        topic = "Ally set the topic: tea at four"
        await until(pilot, lambda: topic in timeline_text(app), "the topic event, renamed")
        await until(pilot, lambda: title(app) == "Porch — tea at four", "the new title")
    assert await owner.state(room, "m.room.topic") == {"topic": "tea at four"}
    profile = await owner.call("GET", f"/profile/{quote(owner.user_id)}/displayname")
    assert profile == {"displayname": "Ally"}
    member = await owner.state(room, "m.room.member", owner.user_id)
    assert member["displayname"] == "Ally"


async def test_leave_then_join_by_alias(node: RunningNode, owner: Client) -> None:
    first = await owner.create_room(name="A first")
    porch = await owner.create_room(name="Porch", room_alias_name="porch", preset="public_chat")
    server = node.node.config.server_name
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        await pilot.press("ctrl+n")
        assert screen.selected == porch
        await command(pilot, "/leave")
        await until(pilot, lambda: porch not in app.client.rooms, "the leave, via /sync")
        assert screen.selected == first
        assert not any("Porch" in label for label in room_labels(app))
        member = await owner.state(porch, "m.room.member", owner.user_id)
        assert member["membership"] == "leave"
        await command(pilot, f"/join #porch:{server}")
        await until(pilot, lambda: screen.selected == porch, "the joined room, shown")
        member = await owner.state(porch, "m.room.member", owner.user_id)
        assert member["membership"] == "join"


async def test_command_errors_are_shown(node: RunningNode, owner: Client) -> None:
    await owner.create_room(name="Porch")
    server = node.node.config.server_name
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        await command(pilot, f"/join #nowhere:{server}")
        await until(pilot, lambda: screen.said, "the refusal")
        assert screen.said[-1].startswith(f"cannot join #nowhere:{server}: M_NOT_FOUND")
        await command(pilot, "/join #porch")  # no server: refused before any request
        notices = [n.message for n in app._notifications]
        assert "usage: /join #alias:server or !room_id:server" in notices
        assert len(screen.said) == 1


async def test_local_echo_is_replaced_by_the_synced_event(node: RunningNode, owner: Client) -> None:
    await owner.create_room(name="Porch")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        timeline = app.screen.query_one(Timeline)
        # What Enter does (test_chat.py presses it), without awaiting: the echo is
        # there before the request has gone out.
        screen.on_send(Composer.Send({"msgtype": "m.text", "body": "echo me"}))
        line = timeline.lines[-1]
        assert timeline.texts()[-1] == f"{owner.user_id}: echo me"
        assert line.state == "pending" and "event_id" not in line.event
        await until(pilot, lambda: line.state == "sent", "the event, via /sync")
        assert line.event["event_id"].startswith("$")
        assert timeline_text(app).count(f"{owner.user_id}: echo me") == 1
        entries = screen.histories[screen.selected or ""].entries
        assert all(e.state == "sent" for e in entries)


async def test_refused_send_is_marked_failed(node: RunningNode, owner: Client) -> None:
    await owner.create_room(name="Porch")
    await owner.create_room(name="Shed")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        big = "x" * 70_000  # over the 64 KiB event limit: 413 M_TOO_LARGE
        screen.on_send(Composer.Send({"msgtype": "m.text", "body": big}))
        line = app.screen.query_one(Timeline).lines[-1]
        assert line.state == "pending"
        await until(pilot, lambda: line.state == "failed", "the refusal")
        assert timeline_text(app)[-1].endswith(big + " ✗ not sent")
        assert any(s.startswith("not sent: M_TOO_LARGE") for s in screen.said), screen.said
        # Still shown after going to another room and back.
        await pilot.press("ctrl+n", "ctrl+p")
        assert timeline_text(app)[-1].endswith(" ✗ not sent")
