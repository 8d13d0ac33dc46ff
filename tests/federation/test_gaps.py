"""Long gaps before a received PDU (a peer back after a long partition, its queue thinned
by catch-up): the receiver walks back with /get_missing_events and stores the gap
oldest first; a gap longer than the fetch budget is cut at the budget and the edge gets
its state from /state, the PDU is still accepted, and the rest of the gap is backfilled
when a client pages back over it.

Spec: content/server-server-api.md "Retrieving events" (POST /get_missing_events) and
"Checks performed on receipt of a PDU". Two real nodes on loopback: B's owner sends
while B cannot reach A; B's queue is then thinned to its newest event (what catch-up
does beyond its cap) and B is let through.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import quote

import pytest

import node.federation.pdus as pdus_module
from tests.federation.nodes import Client, owner_pair, resolver_of
from tests.interop.users import invite_and_join


async def _gap(ca: Client, cb: Client, count: int) -> tuple[str, list[str]]:
    """A room of A's that B joined; ``count`` messages (and a topic change first) sent by
    B while A is unreachable, of which only the newest stays queued for A."""
    a_name = ca.node.node.config.server_name
    room = await ca.create_room(preset="private_chat")
    await invite_and_join(ca, cb, room, a_name)
    pl = await ca.state(room, "m.room.power_levels")
    pl["users"][cb.user_id] = 100
    await ca.put_state(room, "m.room.power_levels", pl)
    await cb.wait_state(room, "m.room.power_levels", pl)
    resolver_of(cb.node).blocked.add(a_name)
    await cb.put_state(room, "m.room.topic", {"topic": "set in the gap"})
    bodies = [f"gap {k}" for k in range(count)]
    for body in bodies:
        await cb.send(room, body)
    db = cb.node.node.db
    await db.write_sync(
        lambda c: c.execute(
            "DELETE FROM federation_outbox_pdus WHERE destination = ? AND seq <"
            " (SELECT MAX(seq) FROM federation_outbox_pdus WHERE destination = ?)",
            (a_name, a_name),
        )
    )
    resolver_of(cb.node).blocked.discard(a_name)
    cb.node.node.federation_sender.peer_is_back(a_name)
    return room, bodies


async def _wait_topic(user: Client, room: str, topic: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await user.state(room, "m.room.topic")).get("topic") == topic:
            return
    raise AssertionError(f"topic never became {topic!r}")


async def test_a_gap_longer_than_one_request_is_walked_back_whole(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (ca, cb):
        room, bodies = await _gap(ca, cb, 250)
        seen = await ca.wait_bodies(room, bodies, within=60)
        assert sorted(b for b in seen if b.startswith("gap")) == sorted(bodies)
        await _wait_topic(ca, room, "set in the gap")
        # B's newest event is a forward extremity of A: the whole gap joined the DAG.
        extremities = {e for e, _ in await ca.node.node.events.get_forward_extremities(room)}
        newest = await cb.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=1")
        assert newest["chunk"][0]["event_id"] in extremities


async def test_a_gap_over_the_budget_is_cut_and_the_rest_backfilled_on_demand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The walk stops at the budget; the PDU is accepted with the edge's state from
    /state; the older part of the gap comes later, when a client pages back over it
    (/messages backfills from B)."""
    caplog.set_level(logging.INFO, logger="node.federation")
    monkeypatch.setattr(pdus_module, "FETCH_BUDGET", 60)
    monkeypatch.setattr(pdus_module, "MISSING_EVENTS_LIMIT", 25)
    async with owner_pair(tmp_path) as (ca, cb):
        room, bodies = await _gap(ca, cb, 150)
        await _wait_topic(ca, room, "set in the gap")
        assert "stopped after 60 events" in caplog.text
        seen = await ca.wait_bodies(room, bodies, within=60)
        got = [b for b in seen if b.startswith("gap")]
        assert sorted(got) == sorted(bodies)
        # A goes on with the room: its owner's message reaches B.
        await ca.send(room, "after the gap")
        await cb.wait_bodies(room, ["after the gap"], within=30)
