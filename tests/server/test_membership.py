"""Membership changes and redactions on a real node."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from node.app import RunningNode
from tests.client import call
from tests.conftest import OWNER, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"
EVE = "@eve:elsewhere.example"


async def member_state(
    http: aiohttp.ClientSession, v3: str, token: str, room_id: str, user: str
) -> dict[str, Any]:
    return dict(await call(http, "GET", f"{v3}/rooms/{room_id}/state/m.room.member/{user}", token))


@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_leave_rejoin_forget(
    client_url: str, http: aiohttp.ClientSession, token: str, version: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    public = (
        await call(
            http,
            "POST",
            f"{v3}/createRoom",
            token,
            {"preset": "public_chat", "room_version": version},
        )
    )["room_id"]
    private = (await call(http, "POST", f"{v3}/createRoom", token, {"room_version": version}))[
        "room_id"
    ]
    since = (await call(http, "GET", f"{v3}/sync", token))["next_batch"]
    # Forgetting a room you are in is refused.
    assert (await call(http, "POST", f"{v3}/rooms/{public}/forget", token, {}, status=400))[
        "errcode"
    ] == "M_UNKNOWN"
    for room in (public, private):
        await call(http, "POST", f"{v3}/rooms/{room}/leave", token, {"reason": "bye"})
    data = await call(http, "GET", f"{v3}/sync", token, since=since)
    assert set(data["rooms"]["leave"]) == {public, private}
    leave_events = data["rooms"]["leave"][public]["timeline"]["events"]
    assert leave_events[-1]["content"] == {"membership": "leave", "reason": "bye"}
    joined = await call(http, "GET", f"{v3}/joined_rooms", token)
    assert public not in joined["joined_rooms"]
    # A public room can be joined again; an invite-only one cannot without an invite.
    assert (await call(http, "POST", f"{v3}/join/{public}", token, {}))["room_id"] == public
    denied = await call(http, "POST", f"{v3}/rooms/{private}/join", token, {}, status=403)
    assert denied["errcode"] == "M_FORBIDDEN"
    # Forget the private room: it leaves /sync's leave section for good.
    await call(http, "POST", f"{v3}/rooms/{private}/forget", token, {})
    filt = json.dumps({"room": {"include_leave": True}})
    data = await call(http, "GET", f"{v3}/sync", token, filter=filt)
    assert private not in data["rooms"].get("leave", {})
    assert public in data["rooms"]["join"]


async def test_ban_unban_kick_remote_users(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    await call(http, "POST", f"{v3}/rooms/{room}/ban", token, {"user_id": EVE, "reason": "spam"})
    assert await member_state(http, v3, token, room, EVE) == {"membership": "ban", "reason": "spam"}
    kicked = await call(
        http, "POST", f"{v3}/rooms/{room}/kick", token, {"user_id": EVE}, status=403
    )
    assert kicked["errcode"] == "M_FORBIDDEN"
    await call(http, "POST", f"{v3}/rooms/{room}/unban", token, {"user_id": EVE})
    assert (await member_state(http, v3, token, room, EVE))["membership"] == "leave"
    again = await call(
        http, "POST", f"{v3}/rooms/{room}/unban", token, {"user_id": EVE}, status=403
    )
    assert again["errcode"] == "M_FORBIDDEN"


@pytest.mark.parametrize(
    ("path", "body", "status", "errcode"),
    [
        # A user on a server that cannot be reached (tests reach loopback only).
        ("/rooms/{room}/invite", {"user_id": EVE}, 502, "M_UNKNOWN"),
        ("/rooms/{room}/invite", {"user_id": "not-a-user"}, 400, "M_INVALID_PARAM"),
        ("/rooms/{room}/invite", {}, 400, "M_MISSING_PARAM"),
        ("/rooms/{room}/ban", {"user_id": 5}, 400, "M_BAD_JSON"),
        # Joins go through the room ID's server, which cannot be reached.
        ("/rooms/!unknown:elsewhere.example/join", {}, 502, "M_UNKNOWN"),
        ("/join/!unknown:elsewhere.example", {}, 502, "M_UNKNOWN"),
        ("/join/%23nowhere:elsewhere.example", {}, 404, "M_NOT_FOUND"),
        ("/join/nonsense", {}, 400, "M_INVALID_PARAM"),
        ("/rooms/{room}/forget", {}, 400, "M_UNKNOWN"),
        ("/rooms/!unknown:elsewhere.example/forget", {}, 404, "M_NOT_FOUND"),
        ("/knock/{room}", {}, 403, "M_FORBIDDEN"),
        ("/rooms/{room}/leave", [], 400, "M_BAD_JSON"),
    ],
)
async def test_bad_membership_requests(
    client_url: str,
    http: aiohttp.ClientSession,
    token: str,
    node: RunningNode,
    path: str,
    body: Any,
    status: int,
    errcode: str,
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    before = await node.node.events.count_events()
    got = await call(http, "POST", v3 + path.replace("{room}", room), token, body, status=status)
    assert got["errcode"] == errcode
    assert await node.node.events.count_events() == before


@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_redaction_is_served_redacted_and_synced(
    client_url: str, http: aiohttp.ClientSession, token: str, node: RunningNode, version: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room = (await call(http, "POST", f"{v3}/createRoom", token, {"room_version": version}))[
        "room_id"
    ]
    msg = (
        await call(
            http,
            "PUT",
            f"{v3}/rooms/{room}/send/m.room.message/1",
            token,
            {"msgtype": "m.text", "body": "secret"},
        )
    )["event_id"]
    since = (await call(http, "GET", f"{v3}/sync", token))["next_batch"]
    redaction = (
        await call(http, "PUT", f"{v3}/rooms/{room}/redact/{msg}/r1", token, {"reason": "oops"})
    )["event_id"]
    again = (
        await call(http, "PUT", f"{v3}/rooms/{room}/redact/{msg}/r1", token, {"reason": "oops"})
    )["event_id"]
    assert again == redaction  # idempotent per transaction ID
    served = await call(http, "GET", f"{v3}/rooms/{room}/event/{msg}", token)
    assert served["content"] == {}
    because = served["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction
    assert because["content"]["reason"] == "oops"
    red_event = await call(http, "GET", f"{v3}/rooms/{room}/event/{redaction}", token)
    # Served in both places whatever the room version (rooms/v11.md), so older and
    # newer clients alike find the target.
    assert red_event["redacts"] == msg
    assert red_event["content"] == {"redacts": msg, "reason": "oops"}
    data = await call(http, "GET", f"{v3}/sync", token, since=since)
    timeline = data["rooms"]["join"][room]["timeline"]["events"]
    assert [e["event_id"] for e in timeline] == [redaction]
    assert timeline[0]["redacts"] == msg == timeline[0]["content"]["redacts"]
    # The stored event is as built: its version's place only.
    stored = await node.node.events.get_event(redaction)
    assert stored is not None
    assert ("redacts" in stored.event.raw) is (version == "10")
    assert ("redacts" in stored.event.raw["content"]) is (version != "10")
    # The stored PDU is kept as built: its hash still verifies the original content.
    raw = await node.node.events.get_event_json(msg)
    assert raw is not None and b"secret" in raw
    # A redacted state event stays in the state, redacted; the room keeps working.
    topic = (
        await call(http, "PUT", f"{v3}/rooms/{room}/state/m.room.topic", token, {"topic": "t"})
    )["event_id"]
    await call(http, "PUT", f"{v3}/rooms/{room}/redact/{topic}/r2", token, {})
    assert await call(http, "GET", f"{v3}/rooms/{room}/state/m.room.topic", token) == {}
    await call(
        http,
        "PUT",
        f"{v3}/rooms/{room}/send/m.room.message/2",
        token,
        {"msgtype": "m.text", "body": "after"},
    )


async def test_redacting_unknown_event_is_accepted_as_pending(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    got = await call(http, "PUT", f"{v3}/rooms/{room}/redact/$unknown/r", token, {})
    assert got["event_id"].startswith("$")
    bad = await call(http, "PUT", f"{v3}/rooms/{room}/redact/nope/r", token, {}, status=400)
    assert bad["errcode"] == "M_INVALID_PARAM"
