"""Receipts and read markers against a real node (receipts.md, read_markers.md)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import nio
import pytest

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD
from tests.ephemeral.conftest import (
    BOB,
    OWNER_ID,
    call,
    ephemeral,
    of_type,
    send_text,
    sync,
)


def receipts_in(response: Any, room_id: str) -> list[dict[str, Any]]:
    return [e["content"] for e in of_type(ephemeral(response, room_id), "m.receipt")]


def flat(contents: list[dict[str, Any]]) -> set[tuple[str, str, str, str | None]]:
    """(event_id, receipt_type, user_id, thread_id) of every receipt in the events."""
    out = set()
    for content in contents:
        for event_id, types in content.items():
            for receipt_type, users in types.items():
                for user_id, receipt in users.items():
                    assert isinstance(receipt["ts"], int)
                    out.add((event_id, receipt_type, user_id, receipt.get("thread_id")))
    return out


async def room_with_messages(
    http: aiohttp.ClientSession, v3: str, token: str, count: int = 3
) -> tuple[str, list[str]]:
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {"preset": "public_chat"}))[
        "room_id"
    ]
    return room_id, [await send_text(http, v3, token, room_id, f"m{i}") for i in range(count)]


async def receipt(
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    room_id: str,
    event_id: str,
    receipt_type: str = "m.read",
    body: Any = None,
    status: int = 200,
) -> Any:
    url = f"{v3}/rooms/{room_id}/receipt/{receipt_type}/{event_id}"
    return await call(http, "POST", url, token, {} if body is None else body, status=status)


async def test_receipts_move_forward_only(
    http: aiohttp.ClientSession, v3: str, token: str, token2: str
) -> None:
    room_id, (e0, e1, e2) = await room_with_messages(http, v3, token)
    since = (await sync(http, v3, token2))["next_batch"]
    assert await receipt(http, v3, token, room_id, e1) == {}
    data = await sync(http, v3, token2, since)
    assert flat(receipts_in(data, room_id)) == {(e1, "m.read", OWNER_ID, None)}
    # An older event: accepted, nothing changes, nothing is sent.
    await receipt(http, v3, token, room_id, e0)
    quiet = await sync(http, v3, token2, data["next_batch"])
    assert not receipts_in(quiet, room_id)
    await receipt(http, v3, token, room_id, e2)
    moved = await sync(http, v3, token2, quiet["next_batch"])
    assert flat(receipts_in(moved, room_id)) == {(e2, "m.read", OWNER_ID, None)}
    # An initial sync carries the current receipts.
    initial = await sync(http, v3, token2)
    assert flat(receipts_in(initial, room_id)) == {(e2, "m.read", OWNER_ID, None)}


async def test_long_poll_wakes_on_receipt(
    http: aiohttp.ClientSession, v3: str, token: str, token2: str
) -> None:
    room_id, (_, _, e2) = await room_with_messages(http, v3, token)
    since = (await sync(http, v3, token2))["next_batch"]
    waiting = asyncio.ensure_future(sync(http, v3, token2, since, timeout="60000"))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await receipt(http, v3, token, room_id, e2, "m.read.private")
    data = await waiting
    assert time.monotonic() - started < 10, "the long poll did not wake on a receipt"
    assert flat(receipts_in(data, room_id)) == {(e2, "m.read.private", OWNER_ID, None)}


async def test_threaded_receipts(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    room_id, (root, plain, _) = await room_with_messages(http, v3, token)
    in_thread = await send_text(
        http,
        v3,
        token,
        room_id,
        "reply",
        **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}},
    )
    reaction = (
        await call(
            http,
            "PUT",
            f"{v3}/rooms/{room_id}/send/m.reaction/r1",
            token,
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": in_thread, "key": "+1"}},
        )
    )["event_id"]
    since = (await sync(http, v3, token))["next_batch"]
    await receipt(http, v3, token, room_id, in_thread, body={"thread_id": root})
    await receipt(http, v3, token, room_id, reaction, body={"thread_id": root})
    await receipt(http, v3, token, room_id, plain, body={"thread_id": "main"})
    await receipt(http, v3, token, room_id, plain)
    data = await sync(http, v3, token, since)
    events = receipts_in(data, room_id)
    # One event per thread: the unthreaded and the main receipt on the same event do
    # not overwrite each other.
    assert len(events) == 3
    assert flat(events) == {
        (reaction, "m.read", OWNER_ID, root),
        (plain, "m.read", OWNER_ID, "main"),
        (plain, "m.read", OWNER_ID, None),
    }
    # Forward only, per thread: the root is before the main receipt's event.
    await receipt(http, v3, token, room_id, root, body={"thread_id": "main"})
    assert flat(receipts_in(await sync(http, v3, token, data["next_batch"]), room_id)) == set()
    # A thread root takes receipts for its own thread too.
    await receipt(http, v3, token, room_id, root, body={"thread_id": root})

    bad = [
        (in_thread, {"thread_id": "main"}),  # in a thread, not on the main timeline
        (reaction, {"thread_id": "main"}),  # related to an event in a thread
        (plain, {"thread_id": root}),  # not related to the thread
        (plain, {"thread_id": ""}),
        (plain, {"thread_id": 7}),
    ]
    for event_id, body in bad:
        data = await receipt(http, v3, token, room_id, event_id, body=body, status=400)
        assert data["errcode"] == "M_INVALID_PARAM", body
    data = await receipt(
        http, v3, token, room_id, plain, "m.fully_read", {"thread_id": "main"}, status=400
    )
    assert data["errcode"] == "M_INVALID_PARAM"


async def test_private_receipts_are_only_for_their_owner(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room_id, (_, e1, e2) = await room_with_messages(http, v3, token)
    await node.node.rooms.send(BOB, room_id, "m.room.member", {"membership": "join"}, state_key=BOB)
    # Bob's receipts, as federation will bring them in: his public one is shown, a
    # private one (which federation never carries) would not be.
    await node.node.receipts.post_receipt(room_id, BOB, "m.read", e1, None)
    await node.node.receipts.post_receipt(room_id, BOB, "m.read.private", e2, None)
    await receipt(http, v3, token, room_id, e2, "m.read.private")
    data = await sync(http, v3, token)
    assert flat(receipts_in(data, room_id)) == {
        (e1, "m.read", BOB, None),
        (e2, "m.read.private", OWNER_ID, None),
    }


async def test_owner_receipts_reset_unread_counts(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    push = node.node.push
    room_id, _ = await room_with_messages(http, v3, token, 1)
    await node.node.rooms.send(BOB, room_id, "m.room.member", {"membership": "join"}, state_key=BOB)
    said = [
        await node.node.rooms.send(
            BOB, room_id, "m.room.message", {"msgtype": "m.text", "body": f"hi {i}"}
        )
        for i in range(3)
    ]
    assert await push.unread_counts(room_id, OWNER_ID) == (3, 0)
    await receipt(http, v3, token, room_id, said[0], "m.read.private")
    assert await push.unread_counts(room_id, OWNER_ID) == (2, 0)
    # A receipt inside a thread leaves the room's counts alone.
    await receipt(http, v3, token, room_id, said[2], body={"thread_id": said[2]})
    assert await push.unread_counts(room_id, OWNER_ID) == (2, 0)
    await call(http, "POST", f"{v3}/rooms/{room_id}/read_markers", token, {"m.read": said[1]})
    assert await push.unread_counts(room_id, OWNER_ID) == (1, 0)
    await receipt(http, v3, token, room_id, said[2], body={"thread_id": "main"})
    assert await push.unread_counts(room_id, OWNER_ID) == (0, 0)


async def test_nio_read_markers_and_receipts(
    client_url: str, http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    client = nio.AsyncClient(client_url, OWNER, device_id="NIODEV")
    try:
        await client.login(PASSWORD)
        room_id, (e0, e1, e2) = await room_with_messages(http, v3, token)
        since = (await sync(http, v3, token))["next_batch"]
        marked = await client.room_read_markers(
            room_id, fully_read_event=e1, read_event=e1, private_read_event=e2
        )
        assert isinstance(marked, nio.RoomReadMarkersResponse), marked
        data = await sync(http, v3, token, since)
        room = data["rooms"]["join"][room_id]
        assert room["account_data"]["events"] == [
            {"type": "m.fully_read", "content": {"event_id": e1}}
        ]
        assert flat(receipts_in(data, room_id)) == {
            (e1, "m.read", OWNER_ID, None),
            (e2, "m.read.private", OWNER_ID, None),
        }
        # The read marker moves forward only; clients cannot set it as account data.
        await call(http, "POST", f"{v3}/rooms/{room_id}/read_markers", token, {"m.fully_read": e0})
        url = f"{v3}/user/{OWNER_ID}/rooms/{room_id}/account_data/m.fully_read"
        assert await call(http, "GET", url, token) == {"event_id": e1}
        await call(http, "PUT", url, token, {"event_id": e0}, status=405)
        # m.fully_read through the receipt API is the read marker, not a receipt.
        updated = await client.update_receipt_marker(
            room_id, e2, nio.ReceiptType.fully_read, thread_id=None
        )
        assert isinstance(updated, nio.UpdateReceiptMarkerResponse), updated
        assert await call(http, "GET", url, token) == {"event_id": e2}
        # nio sends threaded receipts (thread_id "main") by default.
        updated = await client.update_receipt_marker(room_id, e2)
        assert isinstance(updated, nio.UpdateReceiptMarkerResponse), updated
        response = await client.sync(timeout=0, full_state=True)
        assert isinstance(response, nio.SyncResponse), response
        parsed = response.rooms.join[room_id].ephemeral
        receipts = [r for ev in parsed if isinstance(ev, nio.ReceiptEvent) for r in ev.receipts]
        assert {(r.event_id, r.receipt_type, r.thread_id) for r in receipts} == {
            (e1, "m.read", None),
            (e2, "m.read", "main"),
            (e2, "m.read.private", None),
        }
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("receipt_type", "event", "body", "status", "errcode"),
    [
        ("m.unread", "msg", {}, 400, "M_INVALID_PARAM"),
        ("m.read", "$unknown", {}, 404, "M_NOT_FOUND"),
        ("m.read", "other-room", {}, 404, "M_NOT_FOUND"),
        ("m.fully_read", "$unknown", {}, 404, "M_NOT_FOUND"),
        ("m.read", "msg", [], 400, "M_BAD_JSON"),
    ],
)
async def test_bad_receipts(
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    receipt_type: str,
    event: str,
    body: Any,
    status: int,
    errcode: str,
) -> None:
    room_id, (msg, *_) = await room_with_messages(http, v3, token, 1)
    _, (elsewhere, *_) = await room_with_messages(http, v3, token, 1)
    event_id = {"msg": msg, "other-room": elsewhere}.get(event, event)
    data = await receipt(http, v3, token, room_id, event_id, receipt_type, body, status=status)
    assert data["errcode"] == errcode


async def test_bad_read_markers(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    room_id, (msg, *_) = await room_with_messages(http, v3, token, 1)
    url = f"{v3}/rooms/{room_id}/read_markers"
    for body, status, errcode in [
        ({"m.fully_read": 5}, 400, "M_BAD_JSON"),
        ({"m.read": ["$x"]}, 400, "M_BAD_JSON"),
        ({"m.fully_read": msg, "m.read": "$unknown"}, 404, "M_NOT_FOUND"),
        ([], 400, "M_BAD_JSON"),
    ]:
        data = await call(http, "POST", url, token, body, status=status)
        assert data["errcode"] == errcode, body
    # Nothing was changed by the request that failed half-way.
    marker = f"{v3}/user/{OWNER_ID}/rooms/{room_id}/account_data/m.fully_read"
    assert (await call(http, "GET", marker, token, status=404))["errcode"] == "M_NOT_FOUND"
    # Not joined.
    data = await call(
        http,
        "POST",
        f"{v3}/rooms/!nowhere:elsewhere.example/read_markers",
        token,
        {"m.fully_read": msg},
        status=403,
    )
    assert data["errcode"] == "M_FORBIDDEN"
    data = await receipt(http, v3, token, "!nowhere:elsewhere.example", msg, status=403)
    assert data["errcode"] == "M_FORBIDDEN"
