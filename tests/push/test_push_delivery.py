"""Notifications end to end: events from someone else are evaluated for the owner,
counted, listed by GET /notifications, and POSTed to a real push gateway (a small
aiohttp server on 127.0.0.1 in the test).

"Someone else": this single-user node has no second account and no federation yet, so
the other user is ``@bob:remote.example`` and his events are sent with
``RoomService.send`` into a public room (auth rules allow the join). That is the path
an event from another server will take once federation exists: it is persisted, then
RoomService's ``on_persisted`` callbacks run and PushService.on_event evaluates it.
The one unrealistic part is that this node, not remote.example, signs Bob's events,
which nothing on this path checks. One test also calls PushService.on_event directly
with a stored event, to show it is idempotent.

Spec: content/client-server-api/modules/push.md "Receiving notifications", "Marking
notifications as read", "Server behaviour"; api/push-gateway/push_notifier.yaml;
content/push-gateway-api.md "Homeserver behaviour"; notifications.yaml.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from node.app import RunningNode
from tests.push.conftest import OWNER_ID, Gateway, call

BOB = "@bob:remote.example"
PUSHKEY = "V2h5IG9uIGVhcnRoIGRpZCB5b3UgZGVjb2RlIHRoaXM/"
APP_ID = "org.example.croft.test"


async def setup_room(
    http: aiohttp.ClientSession, v3: str, token: str, gateway: Gateway, **data: Any
) -> str:
    """A public room with the owner and Bob, and a pusher pointing at the gateway."""
    body = {
        "kind": "http",
        "app_id": APP_ID,
        "pushkey": PUSHKEY,
        "app_display_name": "Croft test",
        "device_display_name": "pytest",
        "lang": "en",
        "data": {"url": gateway.url, **data},
    }
    await call(http, "POST", f"{v3}/pushers/set", token, body)
    created = await call(
        http,
        "POST",
        f"{v3}/createRoom",
        token,
        {"preset": "public_chat", "name": "Mission Control"},
    )
    return str(created["room_id"])


async def bob_joins(node: RunningNode, room_id: str) -> str:
    content = {"membership": "join", "displayname": "Major Tom"}
    return await node.node.rooms.send(BOB, room_id, "m.room.member", content, state_key=BOB)


async def bob_says(node: RunningNode, room_id: str, body: str, **content: Any) -> str:
    return await node.node.rooms.send(
        BOB, room_id, "m.room.message", {"msgtype": "m.text", "body": body, **content}
    )


async def test_notifications_counted_listed_and_pushed(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode, gateway: Gateway
) -> None:
    push = node.node.push
    room_id = await setup_room(http, v3, token, gateway, **{"org.example.custom": "x"})
    # The owner's own messages never notify the owner.
    await call(
        http,
        "PUT",
        f"{v3}/rooms/{room_id}/send/m.room.message/own1",
        token,
        {"msgtype": "m.text", "body": f"hello {OWNER_ID}", "m.mentions": {"user_ids": [OWNER_ID]}},
    )
    await bob_joins(node, room_id)  # .m.rule.member_event: no notification
    assert await push.unread_counts(room_id, OWNER_ID) == (0, 0)
    assert gateway.received.empty()

    # 1. A mention: highlighted, pushed with the event's fields.
    mention = await bob_says(
        node,
        room_id,
        "I'm floating in a most peculiar way",
        **{"m.mentions": {"user_ids": [OWNER_ID]}},
    )
    assert await push.unread_counts(room_id, OWNER_ID) == (1, 1)
    got = await gateway.next()
    device = got["notification"]["devices"][0]
    assert isinstance(device.pop("pushkey_ts"), int)
    assert got == {
        "notification": {
            "event_id": mention,
            "room_id": room_id,
            "type": "m.room.message",
            "sender": BOB,
            "sender_display_name": "Major Tom",
            "room_name": "Mission Control",
            "prio": "high",
            "content": {
                "msgtype": "m.text",
                "body": "I'm floating in a most peculiar way",
                "m.mentions": {"user_ids": [OWNER_ID]},
            },
            "counts": {"unread": 1},
            "devices": [
                {
                    "app_id": APP_ID,
                    "pushkey": PUSHKEY,
                    "data": {"org.example.custom": "x"},  # everything but the url
                    "tweaks": {"sound": "default", "highlight": True},
                }
            ],
        }
    }

    # 2. A plain message in a two-member room: .m.rule.room_one_to_one.
    plain = await bob_says(node, room_id, "ground control?")
    got = await gateway.next()
    assert got["notification"]["event_id"] == plain
    assert got["notification"]["counts"] == {"unread": 2}
    assert got["notification"]["devices"][0]["tweaks"] == {"sound": "default"}
    assert await push.unread_counts(room_id, OWNER_ID) == (2, 1)

    # 3. A notice and an @room from someone without the power: the notice is silent,
    # the @room is an ordinary message.
    await node.node.rooms.send(
        BOB, room_id, "m.room.message", {"msgtype": "m.notice", "body": "beep"}
    )
    room_mention = await bob_says(node, room_id, "everyone!", **{"m.mentions": {"room": True}})
    got = await gateway.next()
    assert got["notification"]["event_id"] == room_mention
    assert got["notification"]["devices"][0]["tweaks"] == {"sound": "default"}
    assert await push.unread_counts(room_id, OWNER_ID) == (3, 1)

    # GET /notifications: newest first, unread, filters and pages.
    listed = await call(http, "GET", f"{v3}/notifications", token)
    assert [n["event"]["event_id"] for n in listed["notifications"]] == [
        room_mention,
        plain,
        mention,
    ]
    first = listed["notifications"][-1]
    assert first["room_id"] == room_id and first["read"] is False
    assert first["actions"] == [
        "notify",
        {"set_tweak": "sound", "value": "default"},
        {"set_tweak": "highlight"},
    ]
    assert "room_id" not in first["event"] and first["event"]["sender"] == BOB
    assert isinstance(first["ts"], int) and "next_token" not in listed
    only = await call(http, "GET", f"{v3}/notifications", token, only="highlight")
    assert [n["event"]["event_id"] for n in only["notifications"]] == [mention]
    page = await call(http, "GET", f"{v3}/notifications", token, limit="2")
    assert len(page["notifications"]) == 2
    rest = await call(
        http, "GET", f"{v3}/notifications", token, limit="2", **{"from": page["next_token"]}
    )
    assert [n["event"]["event_id"] for n in rest["notifications"]] == [mention]

    # Evaluating the same event again changes nothing.
    stored = await node.node.events.get_event(mention)
    assert stored is not None
    state = await node.node.events.get_current_state_ids(room_id)
    state_events = await node.node.events.get_events(state.values())
    await push.on_event(stored.event, {k: state_events[v].event for k, v in state.items()})
    assert await push.unread_counts(room_id, OWNER_ID) == (3, 1)

    # Reading up to the mention: counts start after it, and the badge is updated.
    await push.mark_read(room_id, OWNER_ID, mention)
    assert await push.unread_counts(room_id, OWNER_ID) == (2, 0)
    badge = await gateway.next()
    assert badge["notification"]["counts"] == {"unread": 2}
    assert "event_id" not in badge["notification"]
    assert badge["notification"]["devices"][0]["pushkey"] == PUSHKEY
    listed = await call(http, "GET", f"{v3}/notifications", token)
    assert [n["read"] for n in listed["notifications"]] == [False, False, True]
    # An older receipt does not move the count back.
    await push.mark_read(room_id, OWNER_ID, mention)
    assert await push.unread_counts(room_id, OWNER_ID) == (2, 0)
    # Reading everything: zero counts are left out of the badge.
    await push.mark_read(room_id, OWNER_ID, room_mention)
    assert await push.unread_counts(room_id, OWNER_ID) == (0, 0)
    assert (await gateway.next())["notification"]["counts"] == {}

    # New messages after the receipt count from zero again.
    await bob_says(node, room_id, "can you hear me?")
    assert await push.unread_counts(room_id, OWNER_ID) == (1, 0)
    await push.gateway.idle()


async def test_event_id_only_format(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode, gateway: Gateway
) -> None:
    room_id = await setup_room(http, v3, token, gateway, format="event_id_only")
    await bob_joins(node, room_id)
    event_id = await bob_says(node, room_id, "hi")
    got = (await gateway.next())["notification"]
    assert set(got) == {"event_id", "room_id", "counts", "devices", "prio"}
    assert got["event_id"] == event_id and got["room_id"] == room_id
    assert got["devices"][0]["data"] == {"format": "event_id_only"}


async def test_master_rule_silences(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode, gateway: Gateway
) -> None:
    room_id = await setup_room(http, v3, token, gateway)
    await call(
        http,
        "PUT",
        f"{v3}/pushrules/global/override/.m.rule.master/enabled",
        token,
        {"enabled": True},
    )
    await bob_joins(node, room_id)
    await bob_says(node, room_id, "hi", **{"m.mentions": {"user_ids": [OWNER_ID]}})
    await node.node.push.gateway.idle()
    assert gateway.received.empty()
    assert await node.node.push.unread_counts(room_id, OWNER_ID) == (0, 0)
    assert (await call(http, "GET", f"{v3}/notifications", token))["notifications"] == []


async def test_room_rule_silences_one_room(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode, gateway: Gateway
) -> None:
    room_id = await setup_room(http, v3, token, gateway)
    await call(http, "PUT", f"{v3}/pushrules/global/room/{room_id}", token, {"actions": []})
    await bob_joins(node, room_id)
    await bob_says(node, room_id, "quiet please")
    # A mention is an override rule and still gets through.
    mention = await bob_says(node, room_id, "but you", **{"m.mentions": {"user_ids": [OWNER_ID]}})
    assert (await gateway.next())["notification"]["event_id"] == mention
    assert await node.node.push.unread_counts(room_id, OWNER_ID) == (1, 1)


async def test_rejected_pushkey_removes_the_pusher(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode, gateway: Gateway
) -> None:
    room_id = await setup_room(http, v3, token, gateway)
    gateway.answers = [(200, {"rejected": [PUSHKEY]})]
    await bob_joins(node, room_id)
    await bob_says(node, room_id, "hi")
    await gateway.next()
    await node.node.push.gateway.idle()
    assert await call(http, "GET", f"{v3}/pushers", token) == {"pushers": []}
    await bob_says(node, room_id, "anyone?")
    await node.node.push.gateway.idle()
    assert gateway.received.empty()


async def test_gateway_errors_are_retried_with_backoff(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode, gateway: Gateway
) -> None:
    client = node.node.push.gateway
    client.first_delay = 0.05
    room_id = await setup_room(http, v3, token, gateway)
    gateway.answers = [(500, {}), (429, {"errcode": "M_LIMIT_EXCEEDED"})]
    await bob_joins(node, room_id)
    event_id = await bob_says(node, room_id, "hi")
    stamps = []
    for _ in range(3):
        got = await gateway.next()
        stamps.append(time.monotonic())
        assert got["notification"]["event_id"] == event_id
    # Backoff: 0.05 s, then twice that.
    assert stamps[1] - stamps[0] >= 0.045 and stamps[2] - stamps[1] >= 0.095
    await client.idle()
    assert gateway.received.empty()
    # A gateway that never answers well is given up after the bounded attempts.
    client.attempts = 3
    gateway.answers = [(503, {})] * 10
    await bob_says(node, room_id, "again")
    await client.idle()
    assert gateway.received.qsize() == 3
    # Errors are no reason to drop the pusher.
    assert len((await call(http, "GET", f"{v3}/pushers", token))["pushers"]) == 1


async def test_a_hanging_gateway_does_not_block_sending(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode, gateway: Gateway
) -> None:
    room_id = await setup_room(http, v3, token, gateway)
    gateway.hang = True
    await bob_joins(node, room_id)
    start = time.monotonic()
    for n in range(5):
        await bob_says(node, room_id, f"message {n}")
    assert time.monotonic() - start < 2
    await gateway.next()
    assert await node.node.push.unread_counts(room_id, OWNER_ID) == (5, 0)
    # Stopping the node (the fixture) cancels the pending deliveries.
