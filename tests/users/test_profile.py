"""Profiles: fields over HTTP and matrix-nio, validation, and member events in rooms."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import nio
import pytest

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD
from tests.users.conftest import OWNER_ID, call

ME = quote(OWNER_ID)


async def test_nio_sets_and_gets_displayname_and_avatar(client_url: str) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        assert isinstance(
            await client.set_displayname("Alice A."), nio.ProfileSetDisplayNameResponse
        )
        got = await client.get_displayname()
        assert isinstance(got, nio.ProfileGetDisplayNameResponse), got
        assert got.displayname == "Alice A."
        set_avatar = await client.set_avatar("mxc://example.org/abcDEF123")
        assert isinstance(set_avatar, nio.ProfileSetAvatarResponse), set_avatar
        avatar = await client.get_avatar()
        assert isinstance(avatar, nio.ProfileGetAvatarResponse), avatar
        assert avatar.avatar_url == "mxc://example.org/abcDEF123"
        profile = await client.get_profile()
        assert isinstance(profile, nio.ProfileGetResponse), profile
        assert profile.displayname == "Alice A."
        assert profile.avatar_url == "mxc://example.org/abcDEF123"
    finally:
        await client.close()


async def test_profile_change_is_a_member_event_in_joined_rooms(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    rooms = [(await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"] for _ in "ab"]
    await call(http, "PUT", f"{v3}/profile/{ME}/displayname", token, {"displayname": "Alice"})
    for room_id in rooms:
        member = await call(http, "GET", f"{v3}/rooms/{room_id}/state/m.room.member/{ME}", token)
        assert member == {"membership": "join", "displayname": "Alice"}

    await call(http, "PUT", f"{v3}/profile/{ME}/avatar_url", token, {"avatar_url": "mxc://a.b/c"})
    member = await call(
        http, "GET", f"{v3}/rooms/{rooms[0]}/state/m.room.member/{ME}?format=event", token
    )
    assert member["content"] == {
        "membership": "join",
        "displayname": "Alice",
        "avatar_url": "mxc://a.b/c",
    }
    assert member["sender"] == OWNER_ID and member["state_key"] == OWNER_ID

    # Setting the same name again sends nothing; an empty name removes it.
    before = await node.node.events.count_events(rooms[0])
    await call(http, "PUT", f"{v3}/profile/{ME}/displayname", token, {"displayname": "Alice"})
    assert await node.node.events.count_events(rooms[0]) == before
    await call(http, "PUT", f"{v3}/profile/{ME}/displayname", token, {"displayname": ""})
    member = await call(http, "GET", f"{v3}/rooms/{rooms[1]}/state/m.room.member/{ME}", token)
    assert member == {"membership": "join", "avatar_url": "mxc://a.b/c"}
    missing = await call(http, "GET", f"{v3}/profile/{ME}/displayname", None, status=404)
    assert missing["errcode"] == "M_NOT_FOUND"

    await call(http, "DELETE", f"{v3}/profile/{ME}/avatar_url", token)
    member = await call(http, "GET", f"{v3}/rooms/{rooms[1]}/state/m.room.member/{ME}", token)
    assert member == {"membership": "join"}


async def test_custom_fields_and_time_zone(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    before = await node.node.events.count_events(room_id)
    await call(http, "PUT", f"{v3}/profile/{ME}/m.tz", token, {"m.tz": "Europe/London"})
    field = {"com.example.job": {"title": "gardener", "years": 3}}
    await call(http, "PUT", f"{v3}/profile/{ME}/com.example.job", token, field)
    await call(http, "PUT", f"{v3}/profile/{ME}/displayname", token, {"displayname": "Al"})
    # Reading a profile needs no access token.
    assert await call(http, "GET", f"{v3}/profile/{ME}", None) == {
        "m.tz": "Europe/London",
        "com.example.job": {"title": "gardener", "years": 3},
        "displayname": "Al",
    }
    assert await call(http, "GET", f"{v3}/profile/{ME}/com.example.job", None) == field
    # Only displayname and avatar_url go into member events.
    assert await node.node.events.count_events(room_id) == before + 1
    await call(http, "DELETE", f"{v3}/profile/{ME}/com.example.job", token)
    await call(http, "DELETE", f"{v3}/profile/{ME}/com.example.job", token)  # already gone
    assert "com.example.job" not in await call(http, "GET", f"{v3}/profile/{ME}", None)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "errcode"),
    [
        ("PUT", "/profile/@bob:elsewhere/displayname", {"displayname": "x"}, 403, "M_FORBIDDEN"),
        ("DELETE", "/profile/@bob:elsewhere/displayname", None, 403, "M_FORBIDDEN"),
        ("PUT", "/profile/{me}/displayname", {}, 400, "M_MISSING_PARAM"),
        ("PUT", "/profile/{me}/displayname", {"displayname": 5}, 400, "M_BAD_JSON"),
        ("PUT", "/profile/{me}/displayname", {"displayname": None}, 400, "M_BAD_JSON"),
        ("PUT", "/profile/{me}/displayname", {"displayname": "x" * 300}, 400, "M_BAD_JSON"),
        ("PUT", "/profile/{me}/avatar_url", {"avatar_url": "https://x/y"}, 400, "M_BAD_JSON"),
        ("PUT", "/profile/{me}/avatar_url", {"avatar_url": "mxc://a/../b"}, 400, "M_BAD_JSON"),
        ("PUT", "/profile/{me}/m.tz", {"m.tz": 1}, 400, "M_BAD_JSON"),
        ("PUT", "/profile/{me}/Bad-Key", {"Bad-Key": 1}, 400, "M_INVALID_PARAM"),
        ("PUT", "/profile/{me}/nodots", {"nodots": 1}, 400, "M_INVALID_PARAM"),
        ("PUT", "/profile/{me}/a." + "b" * 300, {}, 400, "M_KEY_TOO_LARGE"),
        (
            "PUT",
            "/profile/{me}/com.example.big",
            {"com.example.big": "x" * 70000},
            400,
            "M_PROFILE_TOO_LARGE",
        ),
        ("PUT", "/profile/{me}/displayname", {"displayname": "\ud800"}, 400, "M_BAD_JSON"),
        ("GET", "/profile/{me}/Bad-Key", None, 400, "M_INVALID_PARAM"),
        ("GET", "/profile/{me}/com.example.unset", None, 404, "M_NOT_FOUND"),
        ("GET", "/profile/@nobody:127.0.0.1:8448", None, 404, "M_NOT_FOUND"),
        ("GET", "/profile/@someone:matrix.org", None, 404, "M_NOT_FOUND"),
        ("GET", "/profile/not-a-user", None, 400, "M_INVALID_PARAM"),
    ],
)
async def test_bad_profile_requests(
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    errcode: str,
) -> None:
    got = await call(http, method, v3 + path.replace("{me}", ME), token, body, status=status)
    assert got["errcode"] == errcode


async def test_profile_changes_need_a_token(http: aiohttp.ClientSession, v3: str) -> None:
    got = await call(
        http, "PUT", f"{v3}/profile/{ME}/displayname", None, {"displayname": "x"}, status=401
    )
    assert got["errcode"] == "M_MISSING_TOKEN"
