"""Two in-process nodes, a and b (issue #7): read markers bring a's unread count to 0,
invites are accepted or declined from the room list, and /invite, /join (a remote
alias) and a refused /topic go through federation."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.federation.nodes import Client, owner_pair
from tests.tui.conftest import make_app, ready, room_labels, until
from tui.screens.invite import InviteScreen
from tui.widgets import RoomList

SIZE = (100, 30)


async def member(client: Client, room: str, user_id: str) -> Any:
    return (await client.state(room, "m.room.member", user_id))["membership"]


async def joined_from_b(a: Client, b: Client, name: str) -> str:
    room = await b.create_room(name=name)
    await b.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": a.user_id})
    server_b = b.node.node.config.server_name
    await a.call("POST", f"/join/{quote(room)}?server_name={quote(server_b)}", {})
    return room


def newest_body(screen: Any, room: str) -> Any:
    return screen.histories[room].entries[-1].content.get("body")


async def unread_on_node(a: Client, room: str) -> int:
    sync = await a.call("GET", "/sync?timeout=0")
    return int(sync["rooms"]["join"][room]["unread_notifications"]["notification_count"])


async def test_opening_a_room_marks_it_read(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b):
        await a.create_room(name="Home")
        room = await joined_from_b(a, b, "Zed")
        for i in range(3):
            await b.send(room, f"news {i}")
        app = make_app(a.node)
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(app, pilot)
            await until(pilot, lambda: " Zed 3" in room_labels(app), "3 unread")
            assert await unread_on_node(a, room) == 3
            await pilot.press("ctrl+n")
            assert screen.selected == room
            await until(pilot, lambda: "▌Zed" in room_labels(app), "the count gone")
            assert await unread_on_node(a, room) == 0
            # A message into the open room is marked read too.
            await b.send(room, "more news")
            await until(pilot, lambda: newest_body(screen, room) == "more news", "the message")
            newest = screen.histories[room].entries[-1].event_id
            await until(pilot, lambda: screen.marked_read[room] == newest, "marked read")
            await pilot.press("ctrl+n")  # away: no count comes back
            await until(pilot, lambda: " Zed" in room_labels(app), "Zed not selected")
            assert await unread_on_node(a, room) == 0


async def highlight_invite(app: Any, pilot: Any, name: str) -> None:
    await until(pilot, lambda: f"✉ {name}" in room_labels(app), "the invite")
    rooms = app.screen.query_one(RoomList)
    rooms.focus()
    rooms.highlighted = room_labels(app).index(f"✉ {name}")


async def test_accept_and_decline_invites(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b):
        home = await a.create_room(name="Home")
        yes = await b.create_room(name="Yes room")
        no = await b.create_room(name="No room")
        maybe = await b.create_room(name="Maybe room")
        for room in (yes, no, maybe):
            await b.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": a.user_id})
        app = make_app(a.node)
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(app, pilot)
            await highlight_invite(app, pilot, "Yes room")
            # A /sync refreshes the list; the highlight stays on the invite.
            await a.send(home, "meanwhile")
            await until(pilot, lambda: newest_body(screen, home) == "meanwhile", "a sync")
            assert room_labels(app)[app.screen.query_one(RoomList).highlighted] == "✉ Yes room"
            await pilot.press("a")
            await until(pilot, lambda: screen.selected == yes, "the joined room, shown")
            assert "✉ Yes room" not in room_labels(app)
            assert any(label.endswith("Yes room") for label in room_labels(app))
            assert await member(b, yes, a.user_id) == "join"
            await highlight_invite(app, pilot, "No room")
            await pilot.press("d")
            await until(pilot, lambda: "✉ No room" not in room_labels(app), "declined")
            assert no not in app.client.rooms
            assert await member(b, no, a.user_id) == "leave"
            assert "declined the invite to No room" in screen.said
            # Enter asks; Escape leaves the invite as it is; a click accepts.
            await highlight_invite(app, pilot, "Maybe room")
            await pilot.press("enter")
            assert isinstance(app.screen, InviteScreen)
            await pilot.press("escape")
            assert app.screen is screen and "✉ Maybe room" in room_labels(app)
            await pilot.press("enter")
            await pilot.click("#accept")
            await until(pilot, lambda: screen.selected == maybe, "the joined room, shown")
            assert await member(b, maybe, a.user_id) == "join"
            assert "Invites" not in room_labels(app)
            await pilot.pause(1.0)  # a later /sync does not bring the declined invite back
            assert "✉ No room" not in room_labels(app)


async def test_invite_join_and_refusal_over_federation(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b):
        home = await a.create_room(name="Home")
        theirs = await b.create_room(
            name="Their porch", room_alias_name="porch", preset="public_chat"
        )
        server_b = b.node.node.config.server_name
        app = make_app(a.node)
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(app, pilot)
            await pilot.press("ctrl+u", *f"/invite {b.user_id}", "enter")
            await until(pilot, lambda: f"invited {b.user_id}" in screen.said, "the invite")
            assert await member(a, home, b.user_id) == "invite"
            await pilot.press("ctrl+u", *f"/join #porch:{server_b}", "enter")
            await until(pilot, lambda: screen.selected == theirs, "the remote room, shown")
            assert await member(b, theirs, a.user_id) == "join"
            # a has power level 0 in b's room: setting the topic needs 50.
            await pilot.press("ctrl+u", *"/topic mine now", "enter")
            await until(pilot, lambda: screen.said[-1].startswith("cannot set"), "refusal")
            assert screen.said[-1].startswith("cannot set the topic: M_FORBIDDEN")
