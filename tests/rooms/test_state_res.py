"""State resolution: the definitions one by one, rejected events, and whole resolutions
given as state maps.

Spec: content/rooms/fragments/v2-state-res.md ("Definitions", "Algorithm", "Rejected
events") and content/rooms/v12.md "State resolution". Events are tables with readable IDs
and explicit auth events; the cases built as a room DAG are in test_state_res_dag.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from node.events.pdu import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS, Event, StateKey
from node.events.room_versions import V10, V11, V12, RoomVersion
from node.rooms.auth import check_auth_rules
from node.rooms.state_res import (
    InMemoryEventSource,
    StateResolutionError,
    auth_chain,
    auth_difference,
    conflicted_state_subgraph,
    is_power_event,
    iterative_auth_checks,
    mainline_ordering,
    resolve_state,
    reverse_topological_power_ordering,
    separate,
)
from tests.rooms.builders import make_event

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
CHARLIE = "@charlie:example.org"
TOPIC = "m.room.topic"

VERSIONS = (V10, V11, V12)
VERSION_IDS = [f"v{v.identifier}" for v in VERSIONS]


def ev(
    name: str,
    type: str = TOPIC,
    sender: str = ALICE,
    content: Mapping[str, Any] | None = None,
    *,
    state_key: str | None = "",
    auth: Iterable[str] = (),
    prev: Iterable[str] = (),
    ts: int = 0,
    version: RoomVersion = V11,
    rejected: str | None = None,
) -> Event:
    """An event ``$name`` of a v10/v11 room ``!room:example.org`` or the v12 room ``!CREATE``."""
    if type == CREATE:
        body: dict[str, Any] = {"room_version": version.identifier}
        if not version.implicit_room_creator:
            body["creator"] = sender
        body.update(content or {})
        content = body
    return make_event(
        "$" + name,
        type,
        sender,
        content,
        state_key=state_key,
        auth=["$" + a for a in auth],
        prev=["$" + p for p in prev],
        ts=ts,
        room_version=version,
        room_id="!CREATE" if version.room_id_is_create_event_id else "!room:example.org",
        rejected_reason=rejected,
    )


def ids(*names: str) -> set[str]:
    return {"$" + name for name in names}


def by_id(events: Iterable[Event]) -> dict[str, Event]:
    return {event.event_id: event for event in events}


# -- separate ----------------------------------------------------------------------------------

A, B, C, D = (("t", "a"), ("t", "b"), ("t", "c"), ("t", "d"))


def test_separate_unconflicted_only_when_in_every_set_with_one_value() -> None:
    s1 = {A: "$a", B: "$b1", C: "$c"}
    s2 = {A: "$a", B: "$b2"}
    s3 = {A: "$a", B: "$b1", D: "$d"}
    unconflicted, conflicted = separate([s1, s2, s3])
    assert unconflicted == {A: "$a"}
    # A key missing from some set is conflicted, even with a single value.
    assert conflicted == {B: {"$b1", "$b2"}, C: {"$c"}, D: {"$d"}}


def test_separate_one_state_set_is_all_unconflicted() -> None:
    assert separate([{A: "$a", B: "$b"}]) == ({A: "$a", B: "$b"}, {})


# -- power events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev("p", POWER_LEVELS, content={"users": {}}), True),
        (ev("p", POWER_LEVELS, content={"users": {}}, state_key="x"), False),
        (ev("j", JOIN_RULES, content={"join_rule": "invite"}), True),
        (ev("k", MEMBER, ALICE, {"membership": "leave"}, state_key=BOB), True),
        (ev("b", MEMBER, ALICE, {"membership": "ban"}, state_key=BOB), True),
        (ev("l", MEMBER, BOB, {"membership": "leave"}, state_key=BOB), False),
        (ev("bs", MEMBER, BOB, {"membership": "ban"}, state_key=BOB), False),
        (ev("i", MEMBER, ALICE, {"membership": "invite"}, state_key=BOB), False),
        (ev("jn", MEMBER, BOB, {"membership": "join"}, state_key=BOB), False),
        (ev("t", TOPIC, content={"topic": "x"}), False),
        (ev("m", "m.room.message", content={"body": "x"}, state_key=None), False),
        (ev("c", CREATE), False),
    ],
    ids=lambda value: value.event_id if isinstance(value, Event) else None,
)
def test_is_power_event(event: Event, expected: bool) -> None:
    assert is_power_event(event) is expected


# -- auth chain and auth difference ------------------------------------------------------------


def chain_events() -> list[Event]:
    """CREATE <- IMA <- IPL <- PA <- T1, IPL <- T2; X cites an event the source lacks."""
    return [
        ev("CREATE", CREATE),
        ev("IMA", MEMBER, content={"membership": "join"}, state_key=ALICE, auth=["CREATE"]),
        ev("IPL", POWER_LEVELS, content={"users": {ALICE: 100}}, auth=["CREATE", "IMA"]),
        ev("PA", POWER_LEVELS, content={"users": {ALICE: 100, BOB: 50}}, auth=["CREATE", "IPL"]),
        ev("T1", auth=["CREATE", "PA", "IMA"]),
        ev("T2", auth=["CREATE", "IPL", "IMA"]),
        ev("X", auth=["CREATE", "GONE"]),
    ]


async def test_auth_chain_is_everything_reachable_through_auth_events() -> None:
    source = InMemoryEventSource(chain_events())
    assert await auth_chain(["$T1"], source) == ids("CREATE", "IMA", "IPL", "PA")
    # A given event is in the chain only if another one leads to it.
    assert await auth_chain(["$PA"], source) == ids("CREATE", "IMA", "IPL")
    assert await auth_chain(["$PA", "$T1"], source) == ids("CREATE", "IMA", "IPL", "PA")
    # Missing events are reached by their ID, and not walked through.
    assert await auth_chain(["$X"], source) == ids("CREATE", "GONE")
    assert await auth_chain(["$NOPE"], source) == set()


async def test_auth_difference_counts_each_states_own_events() -> None:
    source = InMemoryEventSource(chain_events())
    base = {(CREATE, ""): "$CREATE", (MEMBER, ALICE): "$IMA", (POWER_LEVELS, ""): "$PA"}
    s1 = base | {(TOPIC, ""): "$T1"}
    s2 = base | {(TOPIC, ""): "$T2"}
    # PA is in both states, so in both full auth chains, though nothing of s2 cites it.
    assert await auth_difference([s1, s2], source) == ids("T1", "T2")
    assert await auth_difference([s1, s1], source) == set()
    assert await auth_difference([s1], source) == set()


async def test_auth_difference_of_three_states() -> None:
    source = InMemoryEventSource(chain_events())
    s1 = {(TOPIC, ""): "$T1"}  # chain: T1 PA IPL IMA CREATE
    s2 = {(TOPIC, ""): "$T2"}  # chain: T2 IPL IMA CREATE
    s3 = {(POWER_LEVELS, ""): "$IPL"}  # chain: IPL IMA CREATE
    assert await auth_difference([s1, s2, s3], source) == ids("T1", "PA", "T2")


async def test_conflicted_state_subgraph_holds_the_paths_between_conflicted_events() -> None:
    # A <- B <- C <- D, with C also citing G; F <- E is a separate pair.
    events = [
        ev("A"),
        ev("B", auth=["A"]),
        ev("G"),
        ev("C", auth=["B", "G"]),
        ev("D", auth=["C"]),
        ev("E"),
        ev("F", auth=["E"]),
    ]
    source = InMemoryEventSource(events)
    assert await conflicted_state_subgraph(ids("A", "D", "F"), source) == ids("A", "B", "C", "D")
    assert await conflicted_state_subgraph(ids("B", "C"), source) == ids("B", "C")
    assert await conflicted_state_subgraph(ids("D", "F"), source) == set()


# -- reverse topological power ordering --------------------------------------------------------


def test_reverse_topological_power_ordering() -> None:
    # A <- B, A <- C, (B, C) <- D; E and F stand alone.
    events = by_id(
        [
            ev("A", sender="@a:x", ts=1),
            ev("B", sender="@b:x", ts=2, auth=["A"]),
            ev("C", sender="@c:x", ts=3, auth=["A"]),
            ev("D", sender="@d:x", ts=0, auth=["B", "C", "OUTSIDE"]),
            ev("E", sender="@e:x", ts=5),
            ev("F", sender="@f:x", ts=5),
        ]
    )
    power = {"@a:x": 0, "@b:x": 50, "@c:x": 100, "@d:x": 100, "@e:x": 50, "@f:x": 50}
    order = reverse_topological_power_ordering(events, events, lambda e: power[e.sender])
    # Ready: A (0), E and F (50: by ts, then ID). Then B (50) and C (100): C first. D last
    # though it has the smallest ts: it waits for B and C.
    assert order == ["$E", "$F", "$A", "$C", "$B", "$D"]


def test_reverse_topological_power_ordering_puts_infinite_power_first() -> None:
    events = by_id([ev("A", sender="@a:x", ts=1), ev("B", sender="@b:x", ts=9)])
    power = {"@a:x": 100, "@b:x": math.inf}
    assert reverse_topological_power_ordering(events, events, lambda e: power[e.sender]) == [
        "$B",
        "$A",
    ]


def test_reverse_topological_power_ordering_only_orders_the_given_events() -> None:
    events = by_id([ev("A", ts=3), ev("B", ts=2, auth=["A"]), ev("C", ts=1, auth=["B"])])
    # B is not given: A and C are unrelated and sort by timestamp.
    assert reverse_topological_power_ordering(ids("A", "C"), events, lambda e: 0) == ["$C", "$A"]


def test_reverse_topological_power_ordering_refuses_a_cycle() -> None:
    events = by_id([ev("A", auth=["B"]), ev("B", auth=["A"]), ev("C")])
    with pytest.raises(StateResolutionError, match="cycle"):
        reverse_topological_power_ordering(events, events, lambda e: 0)


# -- mainline ordering -------------------------------------------------------------------------


def mainline_events() -> dict[str, Event]:
    """Mainline P3 -> P2 -> P1 -> P0; Q2 -> Q1 -> P1 is a side chain; R has no PL."""

    def pl(name: str, auth: Sequence[str], ts: int = 0) -> Event:
        return ev(name, POWER_LEVELS, content={"users": {}}, auth=["CREATE", *auth], ts=ts)

    return by_id(
        [
            ev("CREATE", CREATE),
            pl("P0", []),
            pl("P1", ["P0"]),
            pl("P2", ["P1"], ts=20),
            pl("P3", ["P2"]),
            pl("Q1", ["P1"]),
            pl("Q2", ["Q1"]),
            pl("R", []),
            ev("X0", auth=["CREATE", "P3"], ts=1),  # position 0
            ev("X1", auth=["CREATE", "P2"], ts=9),  # position 1
            ev("X2", auth=["CREATE", "P1"], ts=5),  # position 2
            ev("Y2", auth=["CREATE", "Q2"], ts=4),  # Q2, Q1, then P1: position 2
            ev("Z2", auth=["CREATE", "Q1"], ts=5),  # position 2, same ts as X2
            ev("X3", auth=["CREATE", "P0"], ts=8),  # position 3
            ev("N1", auth=["CREATE"], ts=7),  # no power levels: position ∞
            ev("N2", auth=["CREATE", "R"], ts=6),  # R is off the mainline: ∞
            ev("N3", auth=["CREATE", "Q2"], ts=0, state_key="x"),
        ]
    )


def test_mainline_ordering() -> None:
    events = mainline_events()
    # Y2 and Z2 reach the mainline at P1 through the side chain Q2 -> Q1 -> P1.
    order = mainline_ordering(ids("X0", "X1", "X2", "Y2", "Z2", "X3", "N1", "N2"), "$P3", events)
    assert order == ["$N2", "$N1", "$X3", "$Y2", "$X2", "$Z2", "$X1", "$X0"]


def test_mainline_ordering_on_a_shorter_mainline_and_without_one() -> None:
    events = mainline_events()
    order = mainline_ordering(ids("X0", "X2", "Y2", "N3", "X3"), "$P1", events)
    # Mainline [P1, P0]: X3 at 1; X2, Y2 and N3 at 0; X0 (via P3, P2) reaches P1: 0 too.
    assert order == ["$X3", "$N3", "$X0", "$Y2", "$X2"]
    assert mainline_ordering(ids("X0", "X2", "N1"), None, events) == ["$X0", "$X2", "$N1"]


def test_mainline_position_starts_after_the_event_itself() -> None:
    # "Note that the event we started with, e_0, is not included in this list": P2 is on
    # the mainline at 1, but its position is that of P1, 2, so it sorts before X1 (1) despite
    # its later timestamp. (Power-levels events go through step 1, so step 3 never sorts
    # one; this pins the definition.)
    events = mainline_events()
    assert mainline_ordering(ids("P2", "X1"), "$P3", events) == ["$P2", "$X1"]


# -- iterative auth checks and rejected events -------------------------------------------------


def small_room(version: RoomVersion = V11) -> list[Event]:
    """Alice's room with Bob joined; PA would give Bob 50."""
    c = [] if version.room_id_is_create_event_id else ["CREATE"]
    alice_100 = {} if version.privileged_creators else {ALICE: 100}
    join = {"membership": "join"}
    return [
        ev("CREATE", CREATE, version=version),
        ev("IMA", MEMBER, content=join, state_key=ALICE, auth=c, prev=["CREATE"], version=version),
        ev("IPL", POWER_LEVELS, content={"users": alice_100}, auth=[*c, "IMA"], version=version),
        ev(
            "IJR",
            JOIN_RULES,
            content={"join_rule": "public"},
            auth=[*c, "IPL", "IMA"],
            version=version,
        ),
        ev("IMB", MEMBER, BOB, join, state_key=BOB, auth=[*c, "IPL", "IJR"], version=version),
        ev(
            "PA",
            POWER_LEVELS,
            content={"users": alice_100 | {BOB: 50}},
            auth=[*c, "IPL", "IMA"],
            version=version,
        ),
    ]


def base_state(*extra: Event) -> dict[StateKey, str]:
    state = {
        (CREATE, ""): "$CREATE",
        (MEMBER, ALICE): "$IMA",
        (JOIN_RULES, ""): "$IJR",
        (MEMBER, BOB): "$IMB",
    }
    state.update({event.key: event.event_id for event in extra})
    return state


TOPIC_KEY = (TOPIC, "")


def check_table(events: Iterable[Event]) -> None:
    """Every non-rejected event of a table passes the rules against its auth events."""
    table = by_id(events)
    create = table["$CREATE"]
    for event in table.values():
        if not event.rejected:
            check_auth_rules(event, [table[a] for a in event.auth_event_ids], create)


def test_small_room_is_valid() -> None:
    for version in VERSIONS:
        check_table(small_room(version))


def test_rejected_auth_events_do_not_fill_missing_keys() -> None:
    room = small_room()
    rejected_pl = ev("R", POWER_LEVELS, content={"users": {ALICE: 100, BOB: 50}}, rejected="x")
    accepted_pl = ev("R2", POWER_LEVELS, content={"users": {ALICE: 100, BOB: 50}})
    on_rejected = ev("T", sender=BOB, auth=["CREATE", "R", "IMB"])
    on_accepted = ev("T2", sender=BOB, auth=["CREATE", "R2", "IMB"])
    events = by_id([*room, rejected_pl, accepted_pl, on_rejected, on_accepted])
    start = base_state()  # no power levels: the key must come from the auth events
    # Without R there are no power levels at all and Bob (0) is below state_default (50).
    assert iterative_auth_checks(V11, start, ["$T"], events) == start
    assert iterative_auth_checks(V11, start, ["$T2"], events) == start | {TOPIC_KEY: "$T2"}


def test_event_rejected_for_the_state_at_it_is_checked_again() -> None:
    room = small_room()
    # Allowed by its auth events (PA: Bob 50); rejected where it was sent, say after a
    # demotion. Its rejection does not keep it out: it is checked like any other event.
    topic = ev("T", sender=BOB, auth=["CREATE", "PA", "IMB"], rejected="auth at state")
    events = by_id([*room, topic])
    check_table([*room, ev("T", sender=BOB, auth=["CREATE", "PA", "IMB"])])
    with_pa = base_state(events["$PA"])
    assert iterative_auth_checks(V11, with_pa, ["$T"], events) == with_pa | {TOPIC_KEY: "$T"}
    with_ipl = base_state(events["$IPL"])
    assert iterative_auth_checks(V11, with_ipl, ["$T"], events) == with_ipl


def test_event_rejected_against_its_auth_chain_is_never_admitted() -> None:
    room = small_room()
    rejected_pl = ev("R", POWER_LEVELS, content={"users": {ALICE: 100}}, rejected="x")
    # T fails against its own auth events (IPL: Bob 0); T3 cites a rejected event.
    topic = ev("T", sender=BOB, auth=["CREATE", "IPL", "IMB"], rejected="auth events")
    cites_rejected = ev("T3", sender=BOB, auth=["CREATE", "R", "IMB"], rejected="auth events")
    events = by_id([*room, rejected_pl, topic, cites_rejected])
    # The state given would allow both (Bob 50 in PA), but neither may enter it.
    with_pa = base_state(events["$PA"])
    assert iterative_auth_checks(V11, with_pa, ["$T", "$T3"], events) == with_pa
    # The same event, not rejected, is checked against the state alone.
    events["$T"] = ev("T", sender=BOB, auth=["CREATE", "IPL", "IMB"])
    assert iterative_auth_checks(V11, with_pa, ["$T"], events) == with_pa | {TOPIC_KEY: "$T"}


def test_iterative_auth_checks_apply_in_order_and_skip_unknown_events() -> None:
    room = small_room()
    t1 = ev("T1", sender=BOB, auth=["CREATE", "PA", "IMB"])
    t2 = ev("T2", auth=["CREATE", "IPL", "IMA"])
    events = by_id([*room, t1, t2])
    start = base_state()
    assert iterative_auth_checks(V11, start, ["$PA", "$T1", "$NOPE", "$T2"], events) == start | {
        (POWER_LEVELS, ""): "$PA",
        TOPIC_KEY: "$T2",
    }
    # IPL first, then PA: the state's IPL (Bob 0) now judges T1.
    assert iterative_auth_checks(V11, start, ["$IPL", "$T1"], events) == start | {
        (POWER_LEVELS, ""): "$IPL"
    }


async def test_resolution_admits_a_previously_rejected_event_that_passes() -> None:
    """Topics T1 (Alice) and T2 (Bob, rejected on receipt for the state at it, later ts).

    "Handled as usual": T2 is allowed under PA and, applied last, wins.
    """
    room = small_room()
    t1 = ev("T1", auth=["CREATE", "PA", "IMA"], ts=1)
    t2 = ev("T2", sender=BOB, auth=["CREATE", "PA", "IMB"], ts=2, rejected="state at event")
    source = InMemoryEventSource([*room, t1, t2])
    base = base_state(room[-1])
    resolved = await resolve_state(
        V11, [base | {TOPIC_KEY: "$T1"}, base | {TOPIC_KEY: "$T2"}], source
    )
    assert resolved == base | {TOPIC_KEY: "$T2"}


# -- whole resolutions -------------------------------------------------------------------------


class CountingSource(InMemoryEventSource):
    def __init__(self, events: Iterable[Event]) -> None:
        super().__init__(events)
        self.requested: list[str] = []

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        event_ids = list(event_ids)
        self.requested.extend(event_ids)
        return await super().get_events(event_ids)


async def test_no_conflict_needs_no_events() -> None:
    source = CountingSource([])
    state = {A: "$a", B: "$b"}
    assert await resolve_state(V11, [state, dict(state)], source) == state
    assert await resolve_state(V11, [], source) == {}
    assert source.requested == []


async def test_each_event_is_fetched_once_and_missing_events_are_left_out() -> None:
    room = small_room()
    t1 = ev("T1", auth=["CREATE", "PA", "IMA"], ts=1)
    source = CountingSource([*room, t1])
    base = base_state(room[-1])
    # $GONE is conflicted but the source does not have it: it takes no part.
    resolved = await resolve_state(
        V11, [base | {TOPIC_KEY: "$T1"}, base | {TOPIC_KEY: "$GONE"}], source
    )
    assert resolved == base | {TOPIC_KEY: "$T1"}
    assert len(source.requested) == len(set(source.requested))


async def test_events_of_another_room_are_refused() -> None:
    room = small_room()
    stray = make_event("$S", TOPIC, ALICE, {}, state_key="", room_id="!other:example.org")
    source = InMemoryEventSource([*room, stray])
    base = base_state(room[-1])
    with pytest.raises(StateResolutionError, match="room"):
        await resolve_state(V11, [base | {TOPIC_KEY: "$S"}, base], source)


def subgraph_room(version: RoomVersion) -> tuple[list[Event], list[dict[StateKey, str]]]:
    """PL1 -> PL2 (Alice makes Bob 100) -> PL3 (Bob adds Charlie); Charlie's join cites PL2.

    The two states disagree only on the power levels, PL1 against PL3, and both contain
    Charlie's join, so PL2 and PL1 are in both full auth chains: the auth difference is
    {PL3} alone, and PL2 is on the path PL3 -> PL2 -> PL1 between two conflicted events.
    """
    c = [] if version.room_id_is_create_event_id else ["CREATE"]
    alice = {} if version.privileged_creators else {ALICE: 100}
    join = {"membership": "join"}

    def pl(name: str, sender: str, users: dict[str, int], auth: list[str], ts: int) -> Event:
        return ev(
            name, POWER_LEVELS, sender, {"users": alice | users}, auth=auth, ts=ts, version=version
        )

    events = [
        ev("CREATE", CREATE, version=version),
        ev("IMA", MEMBER, content=join, state_key=ALICE, auth=c, prev=["CREATE"], version=version),
        ev("IJR", JOIN_RULES, content={"join_rule": "public"}, auth=[*c, "IMA"], version=version),
        ev("IMB", MEMBER, BOB, join, state_key=BOB, auth=[*c, "IJR"], ts=1, version=version),
        pl("PL1", ALICE, {BOB: 50}, [*c, "IMA"], 2),
        pl("PL2", ALICE, {BOB: 100}, [*c, "IMA", "PL1"], 3),
        ev(
            "IMC",
            MEMBER,
            CHARLIE,
            join,
            state_key=CHARLIE,
            auth=[*c, "IJR", "PL2"],
            ts=4,
            version=version,
        ),
        pl("PL3", BOB, {BOB: 100, CHARLIE: 50}, [*c, "IMB", "PL2"], 5),
    ]
    base = {
        (CREATE, ""): "$CREATE",
        (MEMBER, ALICE): "$IMA",
        (JOIN_RULES, ""): "$IJR",
        (MEMBER, BOB): "$IMB",
        (MEMBER, CHARLIE): "$IMC",
    }
    states = [base | {(POWER_LEVELS, ""): "$PL1"}, base | {(POWER_LEVELS, ""): "$PL3"}]
    return events, states


@pytest.mark.parametrize(
    ("version", "winner"),
    [(V10, "$PL1"), (V11, "$PL1"), (V12, "$PL3")],
    ids=VERSION_IDS,
)
async def test_conflicted_state_subgraph_makes_a_difference(
    version: RoomVersion, winner: str
) -> None:
    """v10/v11: the full conflicted set is {PL1, PL3}. With no link between them, step 1
    sorts by power (both 100) then timestamp: PL1, then PL3, which fails against PL1 (Bob
    at 50 cannot raise himself to 100).
    v12: PL2 joins from the conflicted state subgraph; step 1 must sort PL1, PL2, PL3, and
    each is allowed by the one before: PL3."""
    events, states = subgraph_room(version)
    check_table(events)
    source = InMemoryEventSource(events)
    assert await auth_difference(states, source) == {"$PL3"}
    assert await conflicted_state_subgraph({"$PL1", "$PL3"}, source) == {"$PL1", "$PL2", "$PL3"}
    resolved = await resolve_state(version, states, source)
    assert resolved == states[0] | {(POWER_LEVELS, ""): winner}


async def test_resolution_does_not_depend_on_the_order_of_the_state_sets() -> None:
    for version in VERSIONS:
        events, states = subgraph_room(version)
        source = InMemoryEventSource(events)
        forward = await resolve_state(version, states, source)
        assert await resolve_state(version, states[::-1], source) == forward
