"""Rooms in the TUI (issue #7): create a room (ctrl+o), search by name (ctrl+f), direct
chats (ctrl+d, ``m.direct``) and room settings (F3), against real in-process nodes;
and the pure parts of tui/rooms.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import nio
import pytest
from textual.widgets import Checkbox, Label

from node.app import RunningNode
from tests.federation.nodes import Client, owner_pair
from tests.tui.conftest import chat, make_app, ready, room_labels, until
from tui.rooms import (
    DirectChats,
    RoomEntry,
    RoomError,
    filter_entries,
    matches,
    merge_direct,
    parse_direct,
    parse_invitees,
)
from tui.screens.chat import ChatScreen
from tui.screens.create_room import CreateRoomScreen, DirectChatScreen
from tui.screens.room_settings import RoomSettingsScreen
from tui.widgets.room_list import RoomList, RoomSearch

SIZE = (120, 40)

# -- pure -------------------------------------------------------------------------------


def test_merge_direct_keeps_other_entries() -> None:
    content = {"@a:x": ["!1:x"], "@b:y": ["!2:y", "!3:y"], "weird": "not a list"}
    merged = merge_direct(content, "@b:y", "!4:y")
    assert merged == {"@a:x": ["!1:x"], "@b:y": ["!2:y", "!3:y", "!4:y"], "weird": "not a list"}
    assert content["@b:y"] == ["!2:y", "!3:y"]  # not changed in place
    assert merge_direct(merged, "@b:y", "!4:y") == merged  # no duplicate
    assert merge_direct({}, "@c:z", "!5:z") == {"@c:z": ["!5:z"]}
    assert merge_direct({"@c:z": "junk"}, "@c:z", "!5:z") == {"@c:z": ["!5:z"]}
    assert merge_direct(None, "@c:z", "!5:z") == {"@c:z": ["!5:z"]}


def test_parse_direct_drops_malformed_entries() -> None:
    content = {"@a:x": ["!1:x", 7, "!1:x"], "@b:y": "!2:y", "@c:z": [], 3: ["!3:z"]}
    assert parse_direct(content) == {"@a:x": ["!1:x"]}
    assert parse_direct(["not", "a", "dict"]) == {}


@pytest.mark.parametrize(
    ("name", "query", "found"),
    [
        ("Garden", "gar", True),
        ("Garden", "GARD", True),
        ("Garden", "den", True),
        ("Garden", "", True),
        ("Garden", "garage", False),
        ("Vegetable garden", "veg gar", True),
        ("Vegetable garden", "veg shed", False),
        ("Straße", "STRASSE", True),  # casefold
    ],
)
def test_matches(name: str, query: str, found: bool) -> None:
    assert matches(name, query) is found


def test_filter_entries_keeps_order() -> None:
    entries = [RoomEntry("!1", "Garage"), RoomEntry("!2", "Kitchen"), RoomEntry("!3", "Garden")]
    assert [e.room_id for e in filter_entries(entries, "gar")] == ["!1", "!3"]
    assert filter_entries(entries, "zzz") == []


def test_parse_invitees() -> None:
    assert parse_invitees(" @a:x, @b:y  @c:z ") == ("@a:x", "@b:y", "@c:z")
    assert parse_invitees("") == ()
    with pytest.raises(RoomError, match="not a user ID: bob"):
        parse_invitees("@a:x bob")


def test_direct_chats_from_a_sync_response() -> None:
    me, bob = "@me:x", "@bob:y"
    create = {
        "type": "m.room.create",
        "state_key": "",
        "sender": me,
        "event_id": "$c",
        "origin_server_ts": 1,
        "content": {"room_version": "12"},
    }
    invite = {
        "type": "m.room.member",
        "state_key": me,
        "sender": bob,
        "content": {"membership": "invite", "is_direct": True},
    }
    sync = nio.SyncResponse.from_dict(
        {
            "next_batch": "s1",
            "account_data": {"events": [{"type": "m.direct", "content": {bob: ["!dm:x"]}}]},
            "rooms": {
                "join": {"!dm:x": {"timeline": {"events": [create]}}},
                "invite": {"!new:y": {"invite_state": {"events": [invite]}}},
            },
        }
    )
    assert isinstance(sync, nio.SyncResponse)
    directs = DirectChats()
    directs.update(sync, me)
    assert directs.partners() == {"!dm:x": bob}
    assert directs.room_with(bob, ["!dm:x", "!other:x"]) == "!dm:x"
    assert directs.room_with(bob, ["!other:x"]) is None  # not joined: not opened
    assert directs.invites == {"!new:y"}
    assert directs.creators == {"!dm:x": {me}}


# -- against a node ---------------------------------------------------------------------


def dialog_error(app: Any) -> str:
    return str(app.screen.error)


def title(app: Any) -> str:
    """The chat screen's room title (under a dialog too)."""
    screen = next(s for s in app.screen_stack if isinstance(s, ChatScreen))
    return str(screen.query_one("#room-title", Label).content)


async def test_create_room_opens_it_and_a_taken_alias_is_refused(
    node: RunningNode, owner: Client
) -> None:
    await owner.create_room(name="Home", room_alias_name="porch")
    server = node.node.config.server_name
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, CreateRoomScreen)
        await pilot.press(*"Workshop", "tab", *"tools and glue", "tab", *"porch", "enter")
        await until(pilot, lambda: "M_ROOM_IN_USE" in dialog_error(app), "the refusal")
        assert dialog_error(app).startswith("cannot create the room: M_ROOM_IN_USE")
        assert isinstance(app.screen, CreateRoomScreen)  # still open, with its input
        assert app.screen.query_one("#name").value == "Workshop"  # type: ignore[attr-defined]
        await pilot.press("end", "ctrl+u", *"workshop", "enter")  # the alias, still focused
        await until(pilot, lambda: app.screen is screen, "the dialog closed")
        await until(pilot, lambda: title(app).startswith("Workshop"), "the room shown")
        room = screen.selected
        assert room is not None and any("Workshop" in x for x in room_labels(app))
        assert title(app) == "Workshop — tools and glue"
        alias = await owner.state(room, "m.room.canonical_alias")
        assert alias["alias"] == f"#workshop:{server}"
        encryption = await owner.state(room, "m.room.encryption")
        assert encryption == {"algorithm": "m.megolm.v1.aes-sha2"}  # private: encrypted
        assert (await owner.state(room, "m.room.join_rules"))["join_rule"] == "invite"
        # A public room: not encrypted by default; Escape on an empty dialog cancels.
        await pilot.press("ctrl+o", *"Square", "tab", "tab", "tab", "tab", "space")
        assert not app.screen.query_one("#encrypted", Checkbox).value
        await pilot.press("shift+tab", "enter")  # Enter in the invite input creates
        await until(pilot, lambda: title(app) == "Square", "the public room")
        square = screen.selected
        assert square not in (None, room)
        assert (await owner.state(square, "m.room.join_rules"))["join_rule"] == "public"
        missing = await owner.state(square, "m.room.encryption")
        assert missing["errcode"] == "M_NOT_FOUND"
        await pilot.press("ctrl+o", "escape")
        assert app.screen is screen and screen.selected == square


async def test_search_narrows_the_list_and_enter_opens(node: RunningNode, owner: Client) -> None:
    for name in ("Garage", "Kitchen", "Garden"):
        await owner.create_room(name=name)
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await until(pilot, lambda: len(room_labels(app)) == 3, "three rooms")
        search = app.screen.query_one(RoomSearch)
        assert not search.display
        await pilot.press("ctrl+f")
        assert search.display and search.has_focus
        await pilot.press(*"gar")
        assert [x.strip("▌ ") for x in room_labels(app)] == ["Garage", "Garden"]
        await pilot.press("d")
        assert [x.strip("▌ ") for x in room_labels(app)] == ["Garden"]
        await pilot.press("enter")
        assert title(app) == "Garden"
        assert not search.display and len(room_labels(app)) == 3
        await pilot.press("ctrl+f", *"kit", "escape")
        assert not search.display and len(room_labels(app)) == 3
        assert title(app) == "Garden"  # Escape opens nothing
        await pilot.press("ctrl+f", *"nothing like it", "enter")
        assert room_labels(app) == [] and search.display  # no match: the search stays
        await pilot.press("escape")
        assert len(room_labels(app)) == 3


async def test_settings_change_name_and_topic(node: RunningNode, owner: Client) -> None:
    room = await owner.create_room(name="Old name", topic="old topic")
    app = make_app(node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        assert title(app) == "Old name — old topic"
        await pilot.press("f3")
        assert isinstance(app.screen, RoomSettingsScreen)
        await pilot.press("end", "ctrl+u", *"New name", "tab", "end", "ctrl+u", *"new topic")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is screen, "the dialog closed")
        await until(pilot, lambda: title(app) == "New name — new topic", "the title")
        assert "room settings saved" in screen.said
        assert any(x.strip("▌ ") == "New name" for x in room_labels(app))
    assert (await owner.state(room, "m.room.name"))["name"] == "New name"
    assert (await owner.state(room, "m.room.topic"))["topic"] == "new topic"


async def test_settings_refused_without_power(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b):
        room = await b.create_room(name="Their room", preset="public_chat")
        server_b = b.node.node.config.server_name
        await a.call("POST", f"/join/{quote(room)}?server_name={quote(server_b)}", {})
        app = make_app(a.node)
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(app, pilot)
            await until(pilot, lambda: title(app) == "Their room", "the room")
            await pilot.press("f3", "end", "ctrl+u", *"Mine now", "enter")
            await until(pilot, lambda: "M_FORBIDDEN" in dialog_error(app), "the refusal")
            assert dialog_error(app).startswith("cannot set the name: M_FORBIDDEN")
            assert "\n" not in dialog_error(app)
            assert isinstance(app.screen, RoomSettingsScreen)
            await pilot.press("escape")
            assert app.screen is screen and title(app) == "Their room"
        assert (await b.state(room, "m.room.name"))["name"] == "Their room"


async def direct_content(client: Client) -> Any:
    return await client.call("GET", f"/user/{quote(client.user_id)}/account_data/m.direct")


async def test_direct_chat_with_a_user_of_another_node(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b):
        await b.call("PUT", f"/profile/{quote(b.user_id)}/displayname", {"displayname": "Bob"})
        home = await a.create_room(name="Home")
        path = f"/user/{quote(a.user_id)}/account_data/m.direct"
        await a.call("PUT", path, {"@old:elsewhere": ["!old:elsewhere"]})
        app = make_app(a.node)
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(app, pilot)
            await pilot.press("ctrl+d", *"bob", "enter")
            await until(pilot, lambda: "not a user ID" in dialog_error(app), "refused input")
            assert isinstance(app.screen, DirectChatScreen)
            await pilot.press("ctrl+u", *b.user_id, "enter")
            await until(pilot, lambda: screen.selected not in (None, home), "the direct chat")
            dm = screen.selected
            assert room_labels(app) == ["Direct chats", "▌Bob", "Rooms", " Home"]
            assert await direct_content(a) == {
                "@old:elsewhere": ["!old:elsewhere"],
                b.user_id: [dm],
            }
            member = await a.state(dm, "m.room.member", b.user_id)
            assert member == {"membership": "invite", "is_direct": True} | {
                k: v for k, v in member.items() if k not in ("membership", "is_direct")
            }
            # Opening it again: the same room, no second one.
            await pilot.press("ctrl+n")
            assert screen.selected == home
            await pilot.press("ctrl+d", *b.user_id, "enter")
            await until(pilot, lambda: screen.selected == dm, "the same direct chat")
            joined = await a.call("GET", "/joined_rooms")
            assert sorted(joined["joined_rooms"]) == sorted([home, dm])
            assert len(chat(app).client.rooms) == 2
            # b starts a direct chat with a: the invite is marked as one.
            theirs = await b.create_room(
                is_direct=True, preset="trusted_private_chat", invite=[a.user_id]
            )
            await until(pilot, lambda: theirs in app.client.invited_rooms, "b's invite")
            await until(
                pilot, lambda: any(x.endswith(" · direct") for x in room_labels(app)), "the mark"
            )
            # Accepted, it is a direct chat with b too.
            rooms = app.screen.query_one(RoomList)
            rooms.focus()
            rooms.highlighted = next(
                i for i, x in enumerate(room_labels(app)) if x.endswith(" · direct")
            )
            await pilot.press("a")
            await until(pilot, lambda: screen.selected == theirs, "b's direct chat, joined")
            assert await direct_content(a) == {
                "@old:elsewhere": ["!old:elsewhere"],
                b.user_id: [dm, theirs],
            }
            await until(
                pilot,
                lambda: (
                    room_labels(app)[:3] == ["Direct chats", " Bob", "▌Bob"]
                    or room_labels(app)[:3] == ["Direct chats", "▌Bob", " Bob"]
                ),
                "two Bobs",
            )
