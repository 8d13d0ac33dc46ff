"""State resolution from tables: rows of events, DAG edges, and the exact resolved state.

Spec: content/rooms/fragments/v2-state-res.md and content/rooms/v12.md "State resolution".
Each case lists the events that follow a small initial room, the edges between them as
chains (oldest first), and the state before ``END``, the event that merges the forks. The
harness (shared with test_state_res_deep.py) builds the room as a server would: the state
before an event is the resolution of the states after its prev events, and its auth events
are chosen from that state ("Auth events selection"). Every row must pass the
authorisation rules against its auth events, so a table cannot hide a malformed event.

Cases run in room versions 10, 11 and 12. Power-level rows name ``ALICE`` at 100; in v12,
where Alice as the room creator has infinite power and may not be listed in ``users``, the
harness drops her from ``users``. The expected states are worked out by hand in comments.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest

from node.events.pdu import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS, Event, StateKey
from node.events.room_versions import V10, V11, V12, RoomVersion
from node.rooms.auth import AuthError, auth_types_for_event, check_auth_rules
from node.rooms.state_res import InMemoryEventSource, resolve_state
from tests.rooms.builders import make_event

VERSIONS = (V10, V11, V12)
VERSION_IDS = [f"v{v.identifier}" for v in VERSIONS]
V2_VERSIONS = (V10, V11)

ALICE = "@alice:example.org"  # creates the room: 100 (v12: a creator, infinite)
BOB = "@bob:example.org"  # joined, power 0 unless a row says otherwise
CHARLIE = "@charlie:example.org"  # joined, power 0
ZARA = "@zara:example.org"  # joined, power 0
EVE = "@eve:example.org"  # not in the room
FRED = "@fred:example.org"  # not in the room

TOPIC = "m.room.topic"
NAME = "m.room.name"
MESSAGE = "m.room.message"


# -- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One event of a table; its ID is ``"$" + name``. ``ts`` defaults to the row's index."""

    name: str
    type: str
    sender: str
    content: Mapping[str, Any] = field(default_factory=dict)
    state_key: str | None = None
    ts: int | None = None


def power(name: str, sender: str, users: Mapping[str, int], ts: int | None = None) -> Row:
    return Row(name, POWER_LEVELS, sender, {"users": dict(users)}, "", ts)


def join_rules(name: str, sender: str, rule: str, ts: int | None = None) -> Row:
    return Row(name, JOIN_RULES, sender, {"join_rule": rule}, "", ts)


def member(name: str, sender: str, target: str, membership: str, ts: int | None = None) -> Row:
    return Row(name, MEMBER, sender, {"membership": membership}, target, ts)


def topic(name: str, sender: str, ts: int | None = None) -> Row:
    return Row(name, TOPIC, sender, {"topic": f"topic {name}"}, "", ts)


def message(name: str, sender: str, ts: int | None = None) -> Row:
    return Row(name, MESSAGE, sender, {"body": name}, None, ts)


def initial_rows() -> list[Row]:
    """The room every table starts from, a single chain ending in ``START``."""
    return [
        Row("CREATE", CREATE, ALICE, {}, ""),
        member("IMA", ALICE, ALICE, "join"),
        power("IPL", ALICE, {ALICE: 100}),
        join_rules("IJR", ALICE, "public"),
        member("IMB", BOB, BOB, "join"),
        member("IMC", CHARLIE, CHARLIE, "join"),
        member("IMZ", ZARA, ZARA, "join"),
        message("START", ALICE),
    ]


def eid(name: str) -> str:
    return "$" + name


# -- the room ----------------------------------------------------------------------------------


@dataclass
class Room:
    """A room built from a table: its events and the state before each of them."""

    version: RoomVersion
    rows: dict[str, Row]
    events: dict[str, Event]
    state_before: dict[str, dict[StateKey, str]]
    source: InMemoryEventSource

    @property
    def resolved(self) -> dict[StateKey, str]:
        """The state before ``END``: the resolution of the forks it merges."""
        return self.state_before["END"]

    def key(self, name: str) -> StateKey:
        row = self.rows[name]
        assert row.state_key is not None, f"{name} is not a state event"
        return (row.type, row.state_key)

    def state(self, *names: str) -> dict[StateKey, str]:
        """The initial room state, with the given rows' events at their keys."""
        expected = {
            self.key(row.name): eid(row.name) for row in initial_rows() if row.state_key is not None
        }
        for name in names:
            expected[self.key(name)] = eid(name)
        return expected


def _room_id(version: RoomVersion) -> str:
    return "!CREATE" if version.room_id_is_create_event_id else "!room:example.org"


def _content_for(version: RoomVersion, row: Row, creators: set[str]) -> dict[str, Any]:
    content = dict(row.content)
    if row.type == CREATE:
        content["room_version"] = version.identifier
        if not version.implicit_room_creator:
            content["creator"] = row.sender
    if row.type == POWER_LEVELS and version.privileged_creators:
        # v12 rule 10.4: creators may not be listed (they have infinite power instead).
        content["users"] = {u: n for u, n in content["users"].items() if u not in creators}
    return content


def _prev_events(names: Sequence[str], chains: Iterable[Sequence[str]]) -> dict[str, list[str]]:
    prevs: dict[str, list[str]] = {name: [] for name in names}
    initial = [row.name for row in initial_rows()]
    links = list(pairwise(initial))
    for chain in chains:
        links.extend(pairwise(chain))
    for earlier, later in links:
        if earlier not in prevs[later]:
            prevs[later].append(earlier)
    return prevs


def _topological(names: Sequence[str], prevs: Mapping[str, list[str]]) -> list[str]:
    """Row names with prev events first; among the ready ones, table order (Kahn)."""
    position = {name: i for i, name in enumerate(names)}
    waiting_on = {name: len(prevs[name]) for name in names}
    followers: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for prev in prevs[name]:
            followers[prev].append(name)
    ready = [position[name] for name in names if waiting_on[name] == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        ordered.append(name)
        for follower in followers[name]:
            waiting_on[follower] -= 1
            if waiting_on[follower] == 0:
                heapq.heappush(ready, position[follower])
    assert len(ordered) == len(names), "the edges form a cycle"
    return ordered


async def build_room(
    version: RoomVersion,
    rows: Sequence[Row],
    chains: Iterable[Sequence[str]],
    *,
    create_content: Mapping[str, Any] | None = None,
) -> Room:
    """Build the DAG of ``initial_rows() + rows`` (+ an ``END`` message if not given)."""
    all_rows = initial_rows() + list(rows)
    if not any(row.name == "END" for row in rows):
        all_rows.append(message("END", ALICE))
    if create_content:
        first = all_rows[0]
        all_rows[0] = Row(first.name, first.type, first.sender, dict(create_content), "")
    by_name = {row.name: row for row in all_rows}
    assert len(by_name) == len(all_rows), "duplicate row names"
    index = {row.name: i for i, row in enumerate(all_rows)}
    names = [row.name for row in all_rows]
    prevs = _prev_events(names, chains)
    creators = {ALICE, *(create_content or {}).get("additional_creators", [])}

    room_id = _room_id(version)
    source = InMemoryEventSource()
    events: dict[str, Event] = {}
    depth: dict[str, int] = {}
    state_before: dict[str, dict[StateKey, str]] = {}
    state_after: dict[str, dict[StateKey, str]] = {}
    for name in _topological(names, prevs):
        row = by_name[name]
        prev_states = [state_after[p] for p in prevs[name]]
        if not prev_states:
            before: dict[StateKey, str] = {}
        elif len(prev_states) == 1:
            before = dict(prev_states[0])
        else:
            before = await resolve_state(version, prev_states, source)
        content = _content_for(version, row, creators)
        pdu = {"type": row.type, "sender": row.sender, "content": content}
        if row.state_key is not None:
            pdu["state_key"] = row.state_key
        auth_ids = [
            before[key] for key in sorted(auth_types_for_event(version, pdu)) if key in before
        ]
        event = make_event(
            eid(name),
            row.type,
            row.sender,
            content,
            state_key=row.state_key,
            prev=[eid(p) for p in prevs[name]],
            auth=auth_ids,
            depth=1 + max((depth[p] for p in prevs[name]), default=0),
            ts=index[name] if row.ts is None else row.ts,
            room_version=version,
            room_id=room_id,
        )
        create = events.get("CREATE") if version.room_id_is_create_event_id else None
        # A table row must be allowed where it is sent; otherwise the table is wrong.
        check_auth_rules(event, [events[a[1:]] for a in auth_ids], create)
        events[name] = event
        depth[name] = event.depth
        source.add(event)
        state_before[name] = before
        after = dict(before)
        if row.state_key is not None:
            after[(row.type, row.state_key)] = event.event_id
        state_after[name] = after
    return Room(version, by_name, events, state_before, source)


# -- the harness itself ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_harness_without_forks_is_the_chain_of_events(version: RoomVersion) -> None:
    rows = [topic("T1", ALICE), power("PA", ALICE, {ALICE: 100, BOB: 50}), topic("T2", BOB)]
    room = await build_room(version, rows, [["START", "T1", "PA", "T2", "END"]])
    assert room.resolved == room.state("T1", "PA", "T2")
    assert room.events["T2"].auth_event_ids == (
        ["$IMB", "$PA"] if version is V12 else ["$CREATE", "$IMB", "$PA"]
    )
    assert room.events["END"].prev_event_ids == ["$T2"]
    if version is V12:
        assert room.events["IPL"].content["users"] == {}


async def test_harness_refuses_a_row_the_rules_reject() -> None:
    with pytest.raises(AuthError, match="power level"):
        await build_room(V11, [topic("T1", BOB)], [["START", "T1", "END"]])


# -- bans, kicks and power levels --------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_ban_races_demotion_of_the_banner(version: RoomVersion) -> None:
    """Bob (50) bans Charlie while Alice, concurrently, demotes Bob.

    Full conflicted set {PA, PD, BC, IMC}; all go to step 1 (IMC is in BC's auth chain).
    Order: PA, PD (Alice, highest power), IMC (Charlie, 0), BC (waits on IMC). BC is then
    checked against PD, where Bob has 0 < ban 50: rejected. Charlie stays joined.
    """
    rows = [
        power("PA", ALICE, {ALICE: 100, BOB: 50}),
        member("BC", BOB, CHARLIE, "ban"),
        power("PD", ALICE, {ALICE: 100}),
    ]
    room = await build_room(version, rows, [["START", "PA", "BC", "END"], ["PA", "PD", "END"]])
    assert room.resolved == room.state("PD")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_power_change_by_a_concurrently_banned_user(version: RoomVersion) -> None:
    """Alice bans Bob (50) while Bob, concurrently, promotes Charlie.

    Step 1 sorts PA, IMB, MB, PB: IMB must precede the two events citing it, and Alice's
    ban (100) precedes Bob's power levels (50). Once MB is in, Bob is not joined: PB fails.
    """
    rows = [
        power("PA", ALICE, {ALICE: 100, BOB: 50}),
        member("MB", ALICE, BOB, "ban"),
        power("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50}),
    ]
    room = await build_room(version, rows, [["START", "PA", "MB", "END"], ["PA", "PB", "END"]])
    assert room.resolved == room.state("PA", "MB")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_offtopic_power_levels_chain_wins_over_its_start(version: RoomVersion) -> None:
    """One fork has PA -> PB (Bob adds Charlie) -> PC (Charlie adds an event level); the
    other only PA. All three are in the full conflicted set and sort along their auth
    links, each allowed by the one before: PC."""
    rows = [
        power("PA", ALICE, {ALICE: 100, BOB: 50}),
        power("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50}),
        Row(
            "PC",
            POWER_LEVELS,
            CHARLIE,
            {"users": {ALICE: 100, BOB: 50, CHARLIE: 50}, "events": {NAME: 50}},
            "",
        ),
    ]
    room = await build_room(version, rows, [["START", "PA", "PB", "PC", "END"], ["PA", "END"]])
    assert room.resolved == room.state("PC")


# -- join rules racing joins -------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_join_rules_change_races_a_join(version: RoomVersion) -> None:
    """Alice makes the room invite-only while Eve joins it: IJR then JR in step 1, and
    Eve's join, checked in step 4 against ``invite``, is rejected."""
    rows = [join_rules("JR", ALICE, "invite"), member("ME", EVE, EVE, "join")]
    room = await build_room(version, rows, [["START", "JR", "END"], ["START", "ME", "END"]])
    assert room.resolved == room.state("JR")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_join_rules_change_keeps_an_invited_join(version: RoomVersion) -> None:
    """Same race, but on the joining fork Alice also invites Fred, who joins. Step 3 sorts
    ME, INVF, JF (one mainline position, so by timestamp): Eve is rejected, the invite
    passes, and Fred's join passes against ``invite`` because Fred is invited."""
    rows = [
        join_rules("JR", ALICE, "invite"),
        member("ME", EVE, EVE, "join"),
        member("INVF", ALICE, FRED, "invite"),
        member("JF", FRED, FRED, "join"),
    ]
    chains = [["START", "JR", "END"], ["START", "ME", "INVF", "JF", "END"]]
    room = await build_room(version, rows, chains)
    assert room.resolved == room.state("JR", "JF")


# -- topics ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts_a", "ts_b", "winner"),
    [(20, 10, "TA"), (10, 20, "TB"), (15, 15, "TB")],
    ids=["alice-later", "bob-later", "same-ts-by-event-id"],
)
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_topic_tie_break(version: RoomVersion, ts_a: int, ts_b: int, winner: str) -> None:
    """Two topics on one power-levels event share a mainline position (v12: none, as PA is
    unconflicted and not in the partial state), so the later origin_server_ts is applied
    last and wins; with equal timestamps the greater event ID ($TB > $TA) does."""
    rows = [
        power("PA", ALICE, {ALICE: 100, BOB: 50}),
        topic("TA", ALICE, ts=ts_a),
        topic("TB", BOB, ts=ts_b),
    ]
    room = await build_room(version, rows, [["START", "PA", "TA", "END"], ["PA", "TB", "END"]])
    assert room.resolved == room.state("PA", winner)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_topic_basic(version: RoomVersion) -> None:
    """Alice demotes Bob (PA2) while Bob edits the power levels (PB) and sets a topic (T3).

    Step 1: PA2 (Alice) then PB (Bob, 50), which fails against PA2. Step 3, mainline of
    PA2 = [PA2, PA1, IPL]: T2 cites PA1 (position 1); T3 cites PB, whose power levels
    auth event is PA1 (position 1); T2 is older. T3 then fails: Bob has 0 under PA2.
    """
    rows = [
        topic("T1", ALICE),
        power("PA1", ALICE, {ALICE: 100, BOB: 50}),
        topic("T2", ALICE),
        power("PA2", ALICE, {ALICE: 100}),
        power("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 10}),
        topic("T3", BOB),
    ]
    chains = [["START", "T1", "PA1", "T2", "PA2", "END"], ["PA1", "PB", "T3", "END"]]
    room = await build_room(version, rows, chains)
    assert room.resolved == room.state("PA2", "T2")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_topic_reset_by_a_kick(version: RoomVersion) -> None:
    """Bob (promoted by PA) sets T2, then Alice kicks him; the other fork only saw T1.

    Step 1: IPL, PA, IMB, KB (IMB is in KB's auth chain and the full conflicted set).
    Step 3, mainline [PA, IPL]: T1 (position 1) before T2 (position 0). T2 fails as Bob
    has left: the topic goes back to T1.
    """
    rows = [
        topic("T1", ALICE),
        power("PA", ALICE, {ALICE: 100, BOB: 50}),
        topic("T2", BOB),
        member("KB", ALICE, BOB, "leave"),
    ]
    room = await build_room(
        version, rows, [["START", "T1", "PA", "T2", "KB", "END"], ["T1", "END"]]
    )
    assert room.resolved == room.state("T1", "PA", "KB")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_topic_with_power_level_changes_and_an_earlier_merge(version: RoomVersion) -> None:
    """As test_topic_basic up to MZ, which merges the forks (state there: PA2, T2); Alice
    then sets T4, while Bob, unaware of MZ, sets T5 under his own PB.

    At END: PL {PA2, PB}, topic {T4, T5}. Step 1: PA2, then PB fails. Step 3, mainline
    [PA2, PA1, IPL]: T5 (via PB to PA1, position 1) before T4 (position 0); T5 fails.
    """
    rows = [
        topic("T1", ALICE),
        power("PA1", ALICE, {ALICE: 100, BOB: 50}),
        topic("T2", ALICE),
        power("PA2", ALICE, {ALICE: 100}),
        power("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 10}),
        topic("T3", BOB),
        message("MZ", ZARA),
        topic("T4", ALICE),
        topic("T5", BOB),
    ]
    chains = [
        ["START", "T1", "PA1", "T2", "PA2", "MZ", "T4", "END"],
        ["PA1", "PB", "T3", "MZ"],
        ["T3", "T5", "END"],
    ]
    room = await build_room(version, rows, chains)
    assert room.state_before["MZ"] == room.state("PA2", "T2")
    assert room.resolved == room.state("PA2", "T4")


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
async def test_mainline_sort_beats_timestamps(version: RoomVersion) -> None:
    """Charlie's topic cites PA2, Bob's (much later timestamp) cites PA1. PA2 wins the power
    levels, so the mainline is [PA2, PA1, IPL]: TB (position 1) is applied before TC
    (position 0) whatever the timestamps, and TC wins."""
    rows = [
        power("PA1", ALICE, {ALICE: 100, BOB: 50}),
        power("PA2", ALICE, {ALICE: 100, BOB: 50, CHARLIE: 50}),
        topic("TC", CHARLIE, ts=20),
        topic("TB", BOB, ts=5000),
    ]
    chains = [["START", "PA1", "PA2", "TC", "END"], ["PA1", "TB", "END"]]
    room = await build_room(version, rows, chains)
    assert room.resolved == room.state("PA2", "TC")


# -- where v12 resolves differently ------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "winner"),
    [(V10, "JA"), (V11, "JA"), (V12, "JB")],
    ids=VERSION_IDS,
)
async def test_creator_outranks_a_100_moderator(version: RoomVersion, winner: str) -> None:
    """Alice (creator) and Bob (100) change the join rules at once, Bob's timestamp first.

    v10/v11: both senders have 100, so step 1 sorts by timestamp, JB then JA: JA, applied
    last, wins. v12: Alice's infinite power sorts JA first, so JB is applied last and wins
    (both are allowed either way).
    """
    rows = [
        power("PA", ALICE, {ALICE: 100, BOB: 100}),
        join_rules("JA", ALICE, "invite", ts=20),
        join_rules("JB", BOB, "knock", ts=10),
    ]
    room = await build_room(version, rows, [["START", "PA", "JA", "END"], ["PA", "JB", "END"]])
    assert room.resolved == room.state("PA", winner)


async def test_additional_creators_are_creators_in_step_1() -> None:
    """v12: Bob, an additional creator, outranks Zara at 100 whatever the timestamps."""
    rows = [
        power("PA", ALICE, {ZARA: 100}),
        join_rules("JZ", ZARA, "invite", ts=30),
        join_rules("JB", BOB, "knock", ts=40),
    ]
    room = await build_room(
        V12,
        rows,
        [["START", "PA", "JZ", "END"], ["PA", "JB", "END"]],
        create_content={"additional_creators": [BOB]},
    )
    # JB (infinite) is applied first, JZ (100) last.
    assert room.resolved == room.state("PA", "JZ")


@pytest.mark.parametrize(
    ("version", "winner"),
    [(V10, "TA"), (V11, "TA"), (V12, "TB")],
    ids=VERSION_IDS,
)
async def test_empty_start_map_lets_a_demoted_users_topic_through(
    version: RoomVersion, winner: str
) -> None:
    """Bob sets TB (his clock is far ahead), then Alice demotes him (PD); on one fork she
    then sets TA. Only the topic is conflicted: {TA, TB}; PD is unconflicted.

    v10/v11: steps 2-4 start from the unconflicted map, which holds PD. Mainline of PD:
    TB (cites PA, position 1) before TA (position 0); TB fails (Bob has 0): TA.
    v12: step 2 starts empty and there are no power events, so the partial state has no
    power levels, every mainline position is ∞ and the order is by timestamp: TA, TB. TB
    is checked against its own auth events (PA, Bob 50) and passes: TB.
    """
    rows = [
        power("PA", ALICE, {ALICE: 100, BOB: 50}),
        topic("TB", BOB, ts=9000),
        power("PD", ALICE, {ALICE: 100}),
        topic("TA", ALICE),
        message("MZ", ZARA),
    ]
    chains = [["START", "PA", "TB", "PD", "TA", "END"], ["PD", "MZ", "END"]]
    room = await build_room(version, rows, chains)
    assert room.resolved == room.state("PD", winner)
