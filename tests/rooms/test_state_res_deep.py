"""State resolution over deep forks and large rooms: hundreds of events on each side of a
fork, and thousands of state events in a room.

Spec: content/rooms/fragments/v2-state-res.md and content/rooms/v12.md "State resolution".
The first two cases use the DAG harness of test_state_res_dag.py; the large room is built
directly as state maps, so the run time measured is that of resolve_state alone.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from node.events.pdu import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS, Event, StateKey
from node.events.room_versions import V12, RoomVersion
from node.rooms.state_res import InMemoryEventSource, resolve_state
from tests.rooms.builders import make_event
from tests.rooms.test_state_res_dag import (
    ALICE,
    NAME,
    VERSION_IDS,
    VERSIONS,
    Room,
    Row,
    build_room,
    join_rules,
    member,
)

DEPTH = 250  # steps on each side of the deep forks; two events per step


def user(prefix: str, i: int) -> str:
    return f"@{prefix}{i}:example.org"


def counter_power(name: str, i: int) -> Row:
    """Alice's i-th power-levels edit: only an event level changes (to stay at most 100)."""
    return Row(
        name, POWER_LEVELS, ALICE, {"users": {ALICE: 100}, "events": {"x.step": i % 100}}, ""
    )


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_deep_fork_of_power_level_edits_and_joins(version: RoomVersion) -> None:
    """Fork A: Alice edits the power levels 250 times, and after each edit a new user
    joins. Fork B: 250 other users join and Alice renames the room 250 times.

    Full conflicted set: IPL (B still has it), the 250 edits, the 500 joins and B's last
    name. Step 1 takes IPL and the edits, a single auth chain, in order: all pass, PA250
    wins. Step 3 sorts the rest on the 251-long mainline of PA250: B's events (all citing
    IPL, position 250) first, then A's joins by position; all pass.
    """
    rows: list[Row] = []
    fork_a, fork_b = ["START"], ["START"]
    for i in range(1, DEPTH + 1):
        rows += [counter_power(f"PA{i}", i), member(f"JA{i}", user("a", i), user("a", i), "join")]
        fork_a += [f"PA{i}", f"JA{i}"]
    for i in range(1, DEPTH + 1):
        rows += [
            member(f"JB{i}", user("b", i), user("b", i), "join"),
            Row(f"NB{i}", NAME, ALICE, {"name": f"name {i}"}, ""),
        ]
        fork_b += [f"JB{i}", f"NB{i}"]
    room = await build_room(version, rows, [[*fork_a, "END"], [*fork_b, "END"]])

    joins = [f"J{side}{i}" for side in "AB" for i in range(1, DEPTH + 1)]
    expected = room.state(f"PA{DEPTH}", f"NB{DEPTH}", *joins)
    assert room.resolved == expected

    # The same resolution on its own, timed (the harness also checked every row).
    states = [_state_after(room, fork_a[-1]), _state_after(room, fork_b[-1])]
    started = time.perf_counter()
    assert await resolve_state(version, states, room.source) == expected
    assert time.perf_counter() - started < 10


def _state_after(room: Room, name: str) -> dict[StateKey, str]:
    event = room.events[name]
    state = dict(room.state_before[name])
    state[event.key] = event.event_id
    return state


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_hundreds_of_joins_racing_a_join_rules_change(version: RoomVersion) -> None:
    """Fork A: 250 users join the public room. Fork B: 250 others join, then Alice makes
    the room invite-only. Every join is conflicted (each key is in one state only); step 1
    applies IJR then JR, and in step 4 every join meets ``invite`` with no invite: none
    survives, on either fork."""
    rows = [member(f"JA{i}", user("a", i), user("a", i), "join") for i in range(1, DEPTH + 1)]
    rows += [member(f"JB{i}", user("b", i), user("b", i), "join") for i in range(1, DEPTH + 1)]
    rows.append(join_rules("JR", ALICE, "invite"))
    fork_a = ["START", *(f"JA{i}" for i in range(1, DEPTH + 1)), "END"]
    fork_b = ["START", *(f"JB{i}" for i in range(1, DEPTH + 1)), "JR", "END"]
    room = await build_room(version, rows, [fork_a, fork_b])
    assert room.resolved == room.state("JR")


# -- a large room ------------------------------------------------------------------------------


def large_room(
    version: RoomVersion, members: int, per_side: int, edits: int
) -> tuple[InMemoryEventSource, list[dict[StateKey, str]], dict[StateKey, str]]:
    """``members`` joined users, then a fork: A has ``edits`` power-levels edits and
    ``per_side`` joins, B ``per_side`` other joins. Returns the source, the two states and
    the expected resolution (everything of both sides, A's last edit)."""
    v12 = version.room_id_is_create_event_id
    room_id = "!CREATE" if v12 else "!room:example.org"
    create_auth = [] if v12 else ["$CREATE"]
    users: dict[str, int] = {} if version.privileged_creators else {ALICE: 100}
    events: list[Event] = []
    ts = 0

    def add(
        event_id: str, type: str, sender: str, content: dict[str, Any], key: str, auth: list[str]
    ) -> str:
        nonlocal ts
        ts += 1
        events.append(
            make_event(
                event_id,
                type,
                sender,
                content,
                state_key=key,
                auth=create_auth + auth if type != CREATE else [],
                ts=ts,
                room_version=version,
                room_id=room_id,
            )
        )
        return event_id

    create_content = {"room_version": version.identifier}
    if not version.implicit_room_creator:
        create_content["creator"] = ALICE
    base: dict[StateKey, str] = {}
    base[(CREATE, "")] = add("$CREATE", CREATE, ALICE, create_content, "", [])
    base[(MEMBER, ALICE)] = add("$IMA", MEMBER, ALICE, {"membership": "join"}, ALICE, [])
    base[(POWER_LEVELS, "")] = add("$IPL", POWER_LEVELS, ALICE, {"users": users}, "", ["$IMA"])
    base[(JOIN_RULES, "")] = add(
        "$IJR", JOIN_RULES, ALICE, {"join_rule": "public"}, "", ["$IPL", "$IMA"]
    )

    def join(event_id: str, who: str, power_levels: str) -> str:
        return add(event_id, MEMBER, who, {"membership": "join"}, who, [power_levels, "$IJR"])

    for i in range(members):
        base[(MEMBER, user("m", i))] = join(f"$M{i}", user("m", i), "$IPL")
    side_a, side_b = dict(base), dict(base)
    current = "$IPL"
    for i in range(1, edits + 1):
        content = {"users": users, "events": {"x.step": i % 100}}
        current = add(f"$PA{i}", POWER_LEVELS, ALICE, content, "", [current, "$IMA"])
    side_a[(POWER_LEVELS, "")] = current
    for i in range(per_side):
        side_a[(MEMBER, user("a", i))] = join(f"$A{i}", user("a", i), current)
        side_b[(MEMBER, user("b", i))] = join(f"$B{i}", user("b", i), "$IPL")
    expected = side_b | side_a
    return InMemoryEventSource(events), [side_a, side_b], expected


@pytest.mark.parametrize("version", [VERSIONS[1], V12], ids=["v11", "v12"])
async def test_large_room_resolves_in_linear_time(version: RoomVersion) -> None:
    """3000 members, then 1000 joins on each side and 500 power-levels edits on one."""
    source, states, expected = large_room(version, members=3000, per_side=1000, edits=500)
    started = time.perf_counter()
    resolved = await resolve_state(version, states, source)
    elapsed = time.perf_counter() - started
    assert resolved == expected
    assert len(resolved) == 4 + 3000 + 2000
    # Generous: a run takes well under a second; a quadratic step would take minutes.
    assert elapsed < 20, elapsed
