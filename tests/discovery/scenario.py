"""What the lab tests and benchmarks/lan.py do with nodes: read what a node holds (its
SQLite file, read-only, beside the running node), wait for peers, set up a shared room,
send, and wait until the nodes converge."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from node.discovery.registry import ALIVE, read_peers
from tests.discovery.lab import LabNode
from tests.interop.users import MatrixUser, invite_and_join


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
    nodes: list[LabNode],
    want: list[set[str]] | None = None,
    within: float = 20.0,
    poll: float = 0.1,
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
        await asyncio.sleep(poll)


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
