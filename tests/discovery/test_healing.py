"""Offline federation that heals (issue #5, must-show 2-4): three `croft run` nodes on a
lab bridge share a room; node 3's link is cut; both sides send 200 messages each and
change the topic and the power levels concurrently; the link returns and within 10 s
all three hold the same events and the same current state, and every message is in
every node's /messages. A node restarted during the partition catches up as well.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import quote

import aiohttp

from tests.discovery.lab import Lab, LabNode, run_in_netns
from tests.discovery.scenario import (
    current_state,
    room_events,
    send_many,
    setup_room,
    wait_converged,
    wait_peers,
)
from tests.interop.users import MatrixUser

CONVERGE_S = 10.0
PER_NODE = 200
SMALL_TIMELINE = json.dumps({"room": {"timeline": {"limit": 20}}})


async def partition_and_heal(
    lab: Lab, nodes: list[LabNode], users: list[MatrixUser], room: str, restart: bool
) -> None:
    lab.cut(2)
    u1, u2, u3 = users
    # Side 1-2 and side 3 each change the topic and the power levels, concurrently.
    pl = await u1.state(room, "m.room.power_levels")
    side_a = {**pl, "events": {**pl.get("events", {}), "m.room.topic": 50}}
    side_b = {**pl, "users_default": 1}
    results = await asyncio.gather(
        send_many(u1, room, "one", PER_NODE),
        send_many(u2, room, "two", PER_NODE),
        send_many(u3, room, "three", PER_NODE),
        u2.put_state(room, "m.room.topic", {"topic": "from the pair"}),
        u3.put_state(room, "m.room.topic", {"topic": "from the island"}),
        u1.put_state(room, "m.room.power_levels", side_a),
        u3.put_state(room, "m.room.power_levels", side_b),
    )
    bodies = [b for r in results[:3] for b in r]
    if restart:
        nodes[2].kill()
        nodes[2].start()
        async with aiohttp.ClientSession() as http:
            await nodes[2].wait_ready(http)
        more = await send_many(u3, room, "three after restart", 10)
        bodies += more
    # Both sides notice the cut (the registries say so), and go on sending meanwhile.
    names = [n.server_name for n in nodes]
    cut_view = [{names[1]}, {names[0]}, set()]
    took = await wait_peers(nodes, cut_view, within=20)
    print(f"cut noticed {took:.2f} s after the sends")
    bodies += await send_many(u1, room, "one, later", 5)
    bodies += await send_many(u3, room, "three, later", 5)
    # Each side has its own branch now.
    assert not (await asyncio.to_thread(room_events, nodes[2].database, room)) >= (
        await asyncio.to_thread(room_events, nodes[0].database, room)
    )
    # Node 3's client is up to date before the link returns.
    since = (await u3.call("GET", f"/sync?timeout=0&filter={quote(SMALL_TIMELINE)}"))["next_batch"]
    lab.heal(2)
    took, held = await wait_converged(nodes, room, CONVERGE_S)
    print(f"converged {took:.2f} s after the link returned ({len(held)} events)")
    await merged_timeline_is_a_gap_to_paginate(u3, room, since, bodies)
    states = [await current_state(u, room) for u in users]
    assert states[0] == states[1] == states[2]
    for u in users:
        seen = await u.wait_bodies(room, bodies, within=5)
        assert sorted(b for b in seen if b.startswith(("one", "two", "three"))) == sorted(bodies), (
            "a message is missing or duplicated"
        )
    # The merged state: one of the two topics, chosen the same everywhere.
    topic = await u1.state(room, "m.room.topic")
    assert topic["topic"] in ("from the pair", "from the island")


async def merged_timeline_is_a_gap_to_paginate(
    user: MatrixUser, room: str, since: str, bodies: list[str]
) -> None:
    """The other side's events reach node 3's client as a ``limited`` timeline whose
    ``prev_batch`` paginates back through all of them."""
    synced = await user.call("GET", f"/sync?timeout=0&since={since}&filter={quote(SMALL_TIMELINE)}")
    timeline = synced["rooms"]["join"][room]["timeline"]
    assert timeline["limited"] is True and len(timeline["events"]) == 20
    seen = [e["content"].get("body") for e in timeline["events"]]
    token = timeline["prev_batch"]
    pair = {b for b in bodies if b.startswith(("one", "two"))}
    for _ in range(50):
        if pair <= set(seen):
            break
        page = await user.call(
            "GET", f"/rooms/{quote(room)}/messages?dir=b&limit=100&from={quote(token)}"
        )
        seen += [e["content"].get("body") for e in page["chunk"]]
        token = page.get("end")
        if token is None:
            break
    assert pair <= set(seen), f"{len(pair - set(seen))} of the other side's messages unseen"


def _scenario(lab: Lab, tmp_path: Path, restart: bool) -> None:
    nodes = [LabNode(lab, i, tmp_path / f"node{i + 1}") for i in range(3)]

    async def main() -> None:
        try:
            for n in nodes:
                n.start()
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                for n in nodes:
                    await n.wait_ready(http)
                users = [await n.login(http) for n in nodes]
                await wait_peers(nodes)
                room = await setup_room(users, nodes)
                await partition_and_heal(lab, nodes, users, room, restart)
        finally:
            for n in nodes:
                n.stop()

    run_in_netns(lab.name, main)


def test_partition_heals(lab: Lab, tmp_path: Path) -> None:
    _scenario(lab, tmp_path, restart=False)


def test_node_restarted_during_partition_catches_up(lab: Lab, tmp_path: Path) -> None:
    _scenario(lab, tmp_path, restart=True)
