"""Issue #4, "what it must show" 5: two Croft nodes, as real ``croft run`` processes,
federate with each other the way Croft and Synapse do: invite, join, messages and state
both ways; and messages sent while the other node is down arrive once it is back, in
order, each once, in both directions, also when the sending node is killed (SIGKILL)
with its outbound queue non-empty (the queue is durable: node/federation/sender.py).

Spec: content/server-server-api.md "Inviting to a room", "Joining Rooms",
"Transactions", "Retrieving events" -> /get_missing_events.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from tests.interop.conftest import CroftFactory
from tests.interop.croft_node import CroftProcess
from tests.interop.test_outages import (
    COUNT,
    assert_in_order,
    queued_pdus,
    report,
    wait_queue_empty,
)
from tests.interop.users import MatrixUser, invite_and_join, says


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def nodes(croft_factory: CroftFactory) -> tuple[CroftProcess, CroftProcess]:
    return await croft_factory("a"), await croft_factory("b")


async def owner(node: CroftProcess, http: aiohttp.ClientSession) -> MatrixUser:
    return MatrixUser(http, node.client_url, node.user_id, await node.login())


async def test_two_croft_processes_share_a_room(
    nodes: tuple[CroftProcess, CroftProcess], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    alice, bea = await owner(a, http), await owner(b, http)
    room = await alice.create_room(name="Croft and Croft", topic="first")
    await alice.send(room, "before the invite")
    await invite_and_join(alice, bea, room, a.server_name)
    # The joiner got the room's state and history from the send_join answer.
    assert await bea.state(room, "m.room.name") == {"name": "Croft and Croft"}
    joined = await bea.call("GET", f"/rooms/{quote(room)}/joined_members")
    assert set(joined["joined"]) == {alice.user_id, bea.user_id}

    # Messages both ways.
    await alice.send(room, "hello from A")
    await bea.sync_until(says(room, "hello from A"))
    await bea.send(room, "hello from B")
    await alice.sync_until(says(room, "hello from B"))

    # State both ways: A renames the room and gives B power over the topic; B uses it.
    await alice.put_state(room, "m.room.name", {"name": "Renamed on A"})
    await bea.wait_state(room, "m.room.name", {"name": "Renamed on A"})
    levels = await alice.state(room, "m.room.power_levels")
    levels["users"][bea.user_id] = 50
    levels.setdefault("events", {})["m.room.topic"] = 50
    await alice.put_state(room, "m.room.power_levels", levels)
    await bea.wait_state(room, "m.room.power_levels", levels)
    await bea.put_state(room, "m.room.topic", {"topic": "set on B"})
    await alice.wait_state(room, "m.room.topic", {"topic": "set on B"})

    # Both hold the same events in the same order.
    await bea.send(room, "last")
    await alice.sync_until(says(room, "last"))
    ids_a = [e["event_id"] for e in await alice.messages(room)]
    ids_b = [e["event_id"] for e in await bea.messages(room)]
    assert ids_a[-8:] == ids_b[-8:]


async def test_outages_both_ways_and_a_crash_with_a_full_queue(
    nodes: tuple[CroftProcess, CroftProcess], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    alice, bea = await owner(a, http), await owner(b, http)
    room = await alice.create_room(name="outages")
    await invite_and_join(alice, bea, room, a.server_name)

    # 1. B stopped (SIGTERM) while A sends, and A changes the topic.
    await b.stop()
    to_b = [f"A to B while B was down #{i}" for i in range(COUNT)]
    for body in to_b:
        await alice.send(room, body)
    await alice.put_state(room, "m.room.topic", {"topic": "changed while B was down"})
    assert queued_pdus(a, b.server_name) >= COUNT
    t0 = time.monotonic()
    await b.start()
    up = time.monotonic() - t0
    assert_in_order(await bea.wait_bodies(room, to_b), to_b)
    await bea.wait_state(room, "m.room.topic", {"topic": "changed while B was down"})
    report(f"Croft B down, Croft A sent {COUNT}", t0, up)
    await wait_queue_empty(a, b.server_name)

    # 2. The other way, and the sender crashes: A stopped while B sends; B is killed
    # with those messages still queued, restarted, and delivers them once A is back.
    await a.stop()
    to_a = [f"B to A while A was down #{i}" for i in range(COUNT)]
    for body in to_a:
        await bea.send(room, body)
    queued = queued_pdus(b, a.server_name)
    assert queued >= COUNT
    await b.kill()
    await b.start()
    assert queued_pdus(b, a.server_name) == queued
    t0 = time.monotonic()
    await a.start()
    up = time.monotonic() - t0
    assert_in_order(await alice.wait_bodies(room, to_a), to_a)
    report(f"Croft A down, Croft B sent {COUNT} and was killed", t0, up)
    await wait_queue_empty(b, a.server_name)

    # Live traffic goes on both ways after all that.
    await alice.send(room, "still there, B?")
    await bea.sync_until(says(room, "still there, B?"))
    await bea.send(room, "yes")
    await alice.sync_until(says(room, "yes"))
