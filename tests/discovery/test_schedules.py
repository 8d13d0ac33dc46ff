"""Seeded random schedules of cuts and heals always converge (issue #5, must-show 6).

Three `croft run` nodes share a room. A schedule, drawn from a seeded random generator,
runs ``STEPS`` steps; each step changes the links (a node's link cut or healed, or the
unicast path between two nodes blocked or unblocked while mDNS multicast still flows),
then every node sends a few messages (and now and then changes the topic or the power
levels) while the links stay so for a random while. Then every link heals, and within
``CONVERGE_S`` the three nodes hold the same events and the same current state, and
every message sent is in every node's /messages, once.

The seeds are listed in ``SEEDS`` (``CROFT_LAB_SEEDS=1,2,3`` runs others); a failure
prints the schedule, so that a seed reproduces it.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import aiohttp
import pytest

from tests.discovery.lab import Lab, LabNode, run_in_netns
from tests.discovery.scenario import (
    current_state,
    send_many,
    setup_room,
    wait_converged,
    wait_peers,
)
from tests.interop.users import MatrixUser

SEEDS = [int(s) for s in os.environ.get("CROFT_LAB_SEEDS", "5,17").split(",") if s.strip()]
STEPS = 6
CONVERGE_S = 30.0


class Links:
    """The lab's links as the schedule leaves them."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.cut: set[int] = set()

    def choices(self) -> list[tuple[str, tuple[int, ...]]]:
        out: list[tuple[str, tuple[int, ...]]] = []
        for i in range(3):
            out.append(("heal", (i,)) if i in self.cut else ("cut", (i,)))
        for pair in ((0, 1), (0, 2), (1, 2)):
            out.append(("unblock", pair) if pair in self.lab.blocked else ("block", pair))
        return out

    def apply(self, action: str, args: tuple[int, ...]) -> None:
        if action == "cut":
            self.lab.cut(args[0])
            self.cut.add(args[0])
        elif action == "heal":
            self.lab.heal(args[0])
            self.cut.discard(args[0])
        elif action == "block":
            self.lab.block(*args)
        else:
            self.lab.unblock(*args)

    def heal_all(self) -> None:
        for i in sorted(self.cut):
            self.apply("heal", (i,))
        for pair in sorted(self.lab.blocked):
            self.apply("unblock", pair)


async def traffic(
    rng: random.Random, users: list[MatrixUser], room: str, step: int
) -> tuple[list[str], list[str]]:
    """Each node sends 0-12 messages, changes the topic with probability 0.3 and the
    power levels (``users_default``, nobody's own level) with probability 0.15."""
    jobs = []
    topics: list[str] = []
    for k, u in enumerate(users):
        jobs.append(send_many(u, room, f"s{step} n{k + 1}", rng.randint(0, 12)))
        if rng.random() < 0.3:
            topic = f"topic of node {k + 1} at step {step}"
            topics.append(topic)
            jobs.append(u.put_state(room, "m.room.topic", {"topic": topic}))
        if rng.random() < 0.15:
            pl = await u.state(room, "m.room.power_levels")
            pl["users_default"] = 10 * (k + 1) + step
            jobs.append(u.put_state(room, "m.room.power_levels", pl))
    results = await asyncio.gather(*jobs)
    bodies = [b for r in results if isinstance(r, list) for b in r]
    return bodies, topics


@pytest.mark.parametrize("seed", SEEDS)
def test_random_cuts_and_heals_converge(lab: Lab, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    nodes = [LabNode(lab, i, tmp_path / f"node{i + 1}") for i in range(3)]
    links = Links(lab)
    schedule: list[str] = []

    async def main() -> None:
        try:
            for n in nodes:
                n.init()
            for n in nodes:
                n.start()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                for n in nodes:
                    await n.wait_ready(http)
                users = [await n.login(http) for n in nodes]
                await wait_peers(nodes)
                room = await setup_room(users, nodes)
                sent: list[str] = []
                topics: list[str] = []
                for step in range(STEPS):
                    action, args = rng.choice(links.choices())
                    links.apply(action, args)
                    hold = rng.uniform(0.5, 8.0)
                    schedule.append(f"{step}: {action} {args}, hold {hold:.1f} s")
                    bodies, new_topics = await traffic(rng, users, room, step)
                    sent += bodies
                    topics += new_topics
                    await asyncio.sleep(hold)
                links.heal_all()
                took, held = await wait_converged(nodes, room, CONVERGE_S)
                print(f"seed {seed}: converged {took:.2f} s after the last heal, {len(held)} "
                      f"events, {len(sent)} messages; schedule: {schedule}")  # fmt: skip
                states = [await current_state(u, room) for u in users]
                assert states[0] == states[1] == states[2], schedule
                for u in users:
                    seen = await u.wait_bodies(room, sent, within=5)
                    mine = sorted(b for b in seen if b.startswith("s"))
                    assert mine == sorted(sent), f"lost or doubled messages; {schedule}"
                if topics:
                    topic = await users[0].state(room, "m.room.topic")
                    assert topic["topic"] in topics
        finally:
            for n in nodes:
                n.stop()

    try:
        run_in_netns(lab.name, main)
    except BaseException:
        print(f"seed {seed} failed; schedule: {schedule}")
        raise
