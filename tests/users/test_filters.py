"""Stored filters over HTTP and matrix-nio, load_filter for /sync, and capabilities."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import nio
import pytest

from node.app import RunningNode
from node.errors import MatrixError
from tests.conftest import OWNER, PASSWORD
from tests.users.conftest import OWNER_ID, call

ME = quote(OWNER_ID)

EXAMPLE = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {"limit": 10, "types": ["m.room.message"]},
        "account_data": {"not_types": ["m.tag"]},
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


async def test_upload_and_download_a_filter(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    created = await call(http, "POST", f"{v3}/user/{ME}/filter", token, EXAMPLE)
    filter_id = created["filter_id"]
    assert isinstance(filter_id, str) and not filter_id.startswith("{")
    assert await call(http, "GET", f"{v3}/user/{ME}/filter/{filter_id}", token) == EXAMPLE
    # The same definition again gets the same ID; another gets a new one.
    again = await call(http, "POST", f"{v3}/user/{ME}/filter", token, dict(EXAMPLE))
    assert again["filter_id"] == filter_id
    other = await call(http, "POST", f"{v3}/user/{ME}/filter", token, {"room": {"rooms": []}})
    assert other["filter_id"] != filter_id

    loaded = await node.node.filters.load_filter(OWNER_ID, filter_id)
    assert loaded.room.timeline.limit == 10
    assert loaded.room.account_data.not_types == ("m.tag",)
    inline = await node.node.filters.load_filter(OWNER_ID, '{"room": {"timeline": {"limit": 3}}}')
    assert inline.room.timeline_limit == 3


@pytest.mark.parametrize(
    ("param", "errcode"),
    [
        ("{not json", "M_NOT_JSON"),
        ('{"room": {"timeline": {"limit": -1}}}', "M_BAD_JSON"),
        ('{"event_format": "xml"}', "M_BAD_JSON"),
        ("12345", "M_INVALID_PARAM"),
        ("not-a-filter-id", "M_INVALID_PARAM"),
        ('{"a":' * 2000, "M_NOT_JSON"),
    ],
)
async def test_load_filter_errors(node: RunningNode, param: str, errcode: str) -> None:
    with pytest.raises(MatrixError) as caught:
        await node.node.filters.load_filter(OWNER_ID, param)
    assert caught.value.status == 400
    assert caught.value.errcode == errcode


async def test_filters_belong_to_their_user(node: RunningNode) -> None:
    filter_id = await node.node.filters.create(OWNER_ID, {"room": {"timeline": {"limit": 1}}})
    with pytest.raises(MatrixError):
        await node.node.filters.load_filter("@other:127.0.0.1:8448", filter_id)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "errcode"),
    [
        ("POST", "/user/@bob:elsewhere/filter", {}, 403, "M_FORBIDDEN"),
        ("GET", "/user/@bob:elsewhere/filter/0", None, 403, "M_FORBIDDEN"),
        ("POST", "/user/{me}/filter", {"room": {"timeline": {"limit": "x"}}}, 400, "M_BAD_JSON"),
        ("POST", "/user/{me}/filter", {"room": []}, 400, "M_BAD_JSON"),
        ("POST", "/user/{me}/filter", {"event_fields": "type"}, 400, "M_BAD_JSON"),
        ("POST", "/user/{me}/filter", [1], 400, "M_BAD_JSON"),
        ("POST", "/user/{me}/filter", {"room": {"rooms": ["\ud800"]}}, 400, "M_BAD_JSON"),
        ("GET", "/user/{me}/filter/999", None, 404, "M_NOT_FOUND"),
        ("GET", "/user/{me}/filter/abc", None, 404, "M_NOT_FOUND"),
    ],
)
async def test_bad_filter_requests(
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


async def test_nio_uploads_a_filter(client_url: str, node: RunningNode) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        resp = await client.upload_filter(room={"timeline": {"limit": 5}})
        assert isinstance(resp, nio.UploadFilterResponse), resp
        loaded = await node.node.filters.load_filter(OWNER_ID, resp.filter_id)
        assert loaded.room.timeline_limit == 5
    finally:
        await client.close()


async def test_capabilities(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    caps = (await call(http, "GET", f"{v3}/capabilities", token))["capabilities"]
    assert caps["m.room_versions"] == {
        "default": "12",
        "available": {"10": "stable", "11": "stable", "12": "stable"},
    }
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.profile_fields"] == {"enabled": True}
    assert caps["m.3pid_changes"] == {"enabled": False}
    assert caps["m.get_login_token"] == {"enabled": False}
    assert "m.account_moderation" not in caps
    missing = await call(http, "GET", f"{v3}/capabilities", None, status=401)
    assert missing["errcode"] == "M_MISSING_TOKEN"
