"""Two branches of a room merge by state resolution, whichever event arrives last.

Spec: content/server-server-api.md "Checks performed on receipt of a PDU" and
content/rooms/v2 state resolution (rooms/fragments/v2-state-res.md): the current state
of a room with several forward extremities is the resolution of the states after each.
Two real nodes on loopback: while they cannot reach each other, both owners change the
topic (A first, so B's later one wins the tie on origin_server_ts) and A's owner sends a
message; then B's branch reaches A, B's topic last, and then A's reaches B. Both nodes
end with B's topic, and with the same current state.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import quote

from tests.federation.nodes import Client, owner_pair, resolver_of
from tests.interop.users import invite_and_join


async def _current(user: Client, room: str) -> dict[tuple[str, str], str]:
    events = await user.call("GET", f"/rooms/{quote(room)}/state")
    return {(e["type"], e["state_key"]): e["event_id"] for e in events}


async def test_a_state_event_arriving_last_on_a_split_room_wins_as_resolved(
    tmp_path: Path,
) -> None:
    async with owner_pair(tmp_path) as (ca, cb):
        a_name = ca.node.node.config.server_name
        room = await ca.create_room(preset="private_chat")
        await invite_and_join(ca, cb, room, a_name)
        pl = await ca.state(room, "m.room.power_levels")
        pl["users"][cb.user_id] = 100
        await ca.put_state(room, "m.room.power_levels", pl)
        await cb.wait_state(room, "m.room.power_levels", pl)

        b_name = cb.node.node.config.server_name
        resolver_of(cb.node).blocked.add(a_name)
        resolver_of(ca.node).blocked.add(b_name)
        await ca.put_state(room, "m.room.topic", {"topic": "A's"})
        await ca.send(room, "A goes on")
        await asyncio.sleep(0.01)  # B's topic is the later one
        await cb.put_state(room, "m.room.topic", {"topic": "B's"})
        # B's topic reaches A first (A's events reach B a moment later).
        resolver_of(cb.node).blocked.discard(a_name)
        cb.node.node.federation_sender.peer_is_back(a_name)
        await ca.wait_state(room, "m.room.topic", {"topic": "B's"}, within=30)
        resolver_of(ca.node).blocked.discard(b_name)
        ca.node.node.federation_sender.peer_is_back(b_name)

        await ca.wait_state(room, "m.room.topic", {"topic": "B's"}, within=30)
        await cb.wait_state(room, "m.room.topic", {"topic": "B's"}, within=30)
        deadline = time.monotonic() + 30
        while (a := await _current(ca, room)) != (b := await _current(cb, room)):
            assert time.monotonic() < deadline, (a, b)
            await asyncio.sleep(0.1)
