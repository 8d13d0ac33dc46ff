"""Offline federation that heals (issue #5, must-show 2-4): three `croft run` nodes on a
lab bridge share a room; node 3's link is cut; both sides send 200 messages each and
change the topic and the power levels concurrently; the link returns and within 10 s
all three hold the same events and the same current state, and every message is in
every node's /messages. A node restarted during the partition catches up as well.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from node.discovery.registry import ALIVE, read_peers
from tests.discovery.lab import Lab, LabNode, run_in_netns, unavailable
from tests.interop.users import MatrixUser, invite_and_join

CONVERGE_S = 10.0
PER_NODE = 200


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab(3)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def room_events(database: Path, room: str) -> set[str]:
    """The events of ``room`` the node holds in its timeline (read-only, beside it)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT event_id FROM events WHERE room_id = ? AND outlier = 0 "
            "AND rejected_reason IS NULL",
            (room,),
        )
        return {r[0] for r in rows}
    finally:
        conn.close()


async def alive_peers(node: LabNode) -> set[str]:
    peers, _ = await asyncio.to_thread(read_peers, node.database)
    return {p.server_name for p in peers if p.state == ALIVE}


async def wait_peers(
    nodes: list[LabNode], want: list[set[str]] | None = None, within: float = 20.0
) -> float:
    """Seconds until each node's registry has exactly ``want[i]`` alive (by default:
    all the others)."""
    names = {n.server_name for n in nodes}
    if want is None:
        want = [names - {n.server_name} for n in nodes]
    t0 = time.monotonic()
    deadline = t0 + within
    while True:
        seen = [await alive_peers(n) for n in nodes]
        if seen == want:
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise AssertionError(f"peers seen: {seen}\n" + "\n".join(n.tail() for n in nodes))
        await asyncio.sleep(0.1)


async def current_state(user: MatrixUser, room: str) -> dict[tuple[str, str], str]:
    events = await user.call("GET", f"/rooms/{quote(room)}/state")
    return {(e["type"], e["state_key"]): e["event_id"] for e in events}


async def wait_converged(nodes: list[LabNode], room: str, within: float) -> tuple[float, set[str]]:
    """Seconds until every node holds the same events of ``room``, and that set."""
    t0 = time.monotonic()
    while True:
        held = [await asyncio.to_thread(room_events, n.database, room) for n in nodes]
        if all(h == held[0] for h in held):
            return time.monotonic() - t0, held[0]
        if time.monotonic() - t0 > within:
            counts = [len(h) for h in held]
            union = set().union(*held)
            missing = {n.server_name: len(union - h) for n, h in zip(nodes, held, strict=True)}
            raise AssertionError(
                f"not converged in {within} s: held {counts}, missing {missing}\n"
                + "\n".join(n.tail(30) for n in nodes)
            )
        await asyncio.sleep(0.05)


async def send_many(user: MatrixUser, room: str, tag: str, count: int) -> list[str]:
    bodies = [f"{tag} {k}" for k in range(count)]
    for body in bodies:
        await user.send(room, body)
    return bodies


async def setup_room(users: list[MatrixUser], nodes: list[LabNode]) -> str:
    """Owner 1 makes a room, invites the other two (who join through host1), gives them
    power 100 and all three exchange a message."""
    u1 = users[0]
    room = await u1.create_room(preset="private_chat", name="lab")
    for u in users[1:]:
        await invite_and_join(u1, u, room, nodes[0].server_name)
    pl = await u1.state(room, "m.room.power_levels")
    pl["users"] = {**pl.get("users", {}), **{u.user_id: 100 for u in users[1:]}}
    await u1.put_state(room, "m.room.power_levels", pl)
    hello = [f"hello from {n.server_name}" for n in nodes]
    for u, body in zip(users, hello, strict=True):
        await u.send(room, body)
    for u in users:
        await u.wait_bodies(room, hello, within=20)
    return room


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
    lab.heal(2)
    took, held = await wait_converged(nodes, room, CONVERGE_S)
    print(f"converged {took:.2f} s after the link returned ({len(held)} events)")
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
