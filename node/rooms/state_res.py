"""State resolution v2 (room versions 10 and 11) and its v12 variant, as pure functions.

Spec: content/rooms/fragments/v2-state-res.md ("Definitions", "Algorithm", "Rejected
events"), the modified copy in content/rooms/v12.md "State resolution" (~L260-477), and
content/server-server-api.md "Room State Resolution" (the state of a room after a fork).
:class:`node.events.room_versions.StateResAlgorithm` picks the variant: ``V2`` for v10 and
v11, ``V2_1`` for v12, which differs in two places, both marked "(v12)" below:

* the *full conflicted set* also holds the *conflicted state subgraph*;
* step 2 runs the iterative auth checks from an *empty* state map, not the unconflicted
  state map.

:func:`resolve_state` is the whole algorithm; the definitions are module-level functions so
that tests can feed them tables of events. All I/O goes through an :class:`EventSource`:
the run first loads every state event and its whole auth chain (one ``get_events`` call per
level of the auth DAG), then works on that snapshot with no further awaits but one (the v12
create event). Every step is linear or ``n log n`` in the events it looks at.

Where the spec text leaves a choice, Croft does what Synapse and ruma do, because servers in
one room must arrive at the same state:

* The *full auth chain* of a state S_i counts the events of S_i themselves as well as
  their auth chains. So an event that is in every state set is never in the auth
  difference (read literally, "the union of the auth chains for each event in S_i" would
  leave an unconflicted event out of C_i unless some other event of S_i cites it).
* *Power events* of type ``m.room.power_levels`` and ``m.room.join_rules`` are those with
  the empty ``state_key``, the only ones the authorisation rules read.
* Step 1 enlarges X with the auth events of each power event that are in the full
  conflicted set, and with theirs in turn: the walk does not pass through events outside
  the full conflicted set, and the sort uses those auth-event links as edges.

Rejected events ("Rejected events"): an event rejected on receipt is handled as usual
(re-checked in the iterative auth checks), unless it also fails the authorisation rules
against its own auth events, i.e. it was "rejected due to failure to auth against [its]
auth chain", which is never admitted. Rejected events are never taken from ``auth_events``
to fill a missing key in the iterative auth checks. Events the source does not have are
left out of every step.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol

from node.events.pdu import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS, Event, StateKey
from node.events.room_versions import RoomVersion, StateResAlgorithm
from node.rooms.auth import (
    AuthError,
    auth_types_for_event,
    check_auth_rules,
    check_state_dependent_auth_rules,
    get_user_power_level,
)

__all__ = [
    "EventSource",
    "InMemoryEventSource",
    "StateResolutionError",
    "auth_chain",
    "auth_difference",
    "conflicted_state_subgraph",
    "is_power_event",
    "iterative_auth_checks",
    "mainline_ordering",
    "resolve_state",
    "reverse_topological_power_ordering",
    "separate",
]

CREATE_KEY: StateKey = (CREATE, "")
POWER_LEVELS_KEY: StateKey = (POWER_LEVELS, "")

PowerLevel = int | float  # math.inf for v12 room creators


class EventSource(Protocol):
    """Where state resolution reads events from (the store, or events already in hand)."""

    async def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        """The events with these IDs that the source has; missing IDs are simply absent."""
        ...


class InMemoryEventSource:
    """An :class:`EventSource` backed by a dict, for tests and callers holding the events."""

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._events: dict[str, Event] = {}
        self.add(*events)

    def add(self, *events: Event) -> None:
        for event in events:
            self._events[event.event_id] = event

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._events

    def __len__(self) -> int:
        return len(self._events)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        return {eid: self._events[eid] for eid in event_ids if eid in self._events}


class StateResolutionError(Exception):
    """The events cannot be resolved at all: they span rooms, or auth events form a cycle."""


# -- loading events ----------------------------------------------------------------------------


class _EventLoader:
    """Fetches each event once through the source, and checks they are all in one room."""

    def __init__(self, source: EventSource) -> None:
        self._source = source
        self.events: dict[str, Event] = {}
        self._missing: set[str] = set()
        self._room_id: str | None = None

    async def fetch(self, event_ids: Iterable[str]) -> None:
        wanted = sorted(
            {eid for eid in event_ids if eid not in self.events and eid not in self._missing}
        )
        if not wanted:
            return
        found = await self._source.get_events(wanted)
        for event_id in wanted:
            event = found.get(event_id)
            if event is None or event.event_id != event_id:
                self._missing.add(event_id)
                continue
            if self._room_id is None:
                self._room_id = event.room_id
            elif event.room_id != self._room_id:
                raise StateResolutionError(
                    f"event {event_id} is in room {event.room_id}, not {self._room_id}"
                )
            self.events[event_id] = event

    async def load_auth_closure(self, event_ids: Iterable[str]) -> None:
        """Load these events and everything reachable from them through auth_events."""
        frontier = set(event_ids)
        while frontier:
            await self.fetch(frontier)
            following: set[str] = set()
            for event_id in frontier:
                event = self.events.get(event_id)
                if event is not None:
                    following.update(event.auth_event_ids)
            frontier = {
                eid for eid in following if eid not in self.events and eid not in self._missing
            }

    @property
    def room_id(self) -> str | None:
        return self._room_id


# -- definitions -------------------------------------------------------------------------------


def separate(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """The *unconflicted state map* and, per key, the events of the *conflicted state set*.

    "If a given key K is present in every S_i with the same value V in each state map, then
    the pair (K, V) belongs to the unconflicted state map. Otherwise, V belongs to the
    conflicted state set." A key missing from some S_i is therefore conflicted.
    """
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    keys = {key for state in state_sets for key in state}
    for key in keys:
        values = {state.get(key) for state in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = values.pop()  # type: ignore[assignment]
        else:
            conflicted[key] = {value for value in values if value is not None}
    return unconflicted, conflicted


def is_power_event(event: Event) -> bool:
    """A *power event*: one that might remove someone's ability to do something.

    ``m.room.power_levels`` and ``m.room.join_rules`` (state_key ``""``), and an
    ``m.room.member`` leave or ban whose sender is not its target (a kick or a ban).
    """
    if not event.is_state:
        return False
    if event.type in (POWER_LEVELS, JOIN_RULES):
        return event.state_key == ""
    if event.type == MEMBER:
        return event.membership in ("leave", "ban") and event.sender != event.state_key
    return False


def _reach(
    starts: Iterable[str],
    events: Mapping[str, Event],
    *,
    include_starts: bool,
    stop: Collection[str] = frozenset(),
) -> set[str]:
    """The IDs reachable from ``starts`` through auth_events links, not entering ``stop``.

    With ``include_starts`` the start events count as reached; otherwise a start is in the
    result only when another start leads to it. IDs the source lacks are reached but not
    walked through.
    """
    if include_starts:
        stack = list(starts)
    else:
        stack = [aid for eid in starts if eid in events for aid in events[eid].auth_event_ids]
    reached: set[str] = set()
    while stack:
        event_id = stack.pop()
        if event_id in reached or event_id in stop:
            continue
        reached.add(event_id)
        event = events.get(event_id)
        if event is not None:
            stack.extend(event.auth_event_ids)
    return reached


def _auth_difference(
    state_sets: Sequence[Mapping[StateKey, str]], events: Mapping[str, Event]
) -> set[str]:
    """∪ C_i − ∩ C_i, where C_i is S_i's events plus their auth chains (see the module doc).

    Whatever the events found in every S_i reach is in every C_i, so it is walked once and
    each C_i is walked only outside it.
    """
    sets = [set(state.values()) for state in state_sets]
    if len(sets) < 2:
        return set()
    in_every_set = set.intersection(*sets)
    common = _reach(in_every_set, events, include_starts=True)
    chains = [_reach(s - common, events, include_starts=True, stop=common) for s in sets]
    return set.union(*chains) - set.intersection(*chains)


def _conflicted_state_subgraph(conflicted: set[str], events: Mapping[str, Event]) -> set[str]:
    """(v12) Every event on an auth_events path between two conflicted events, endpoints too.

    An event is on such a path when a conflicted event leads down to it and it leads down
    to a conflicted event: walk down from the conflicted events, then back up the links
    found on the way.
    """
    below = _reach(conflicted, events, include_starts=False)
    region = conflicted | below
    cited_by: dict[str, list[str]] = {}
    for event_id in region:
        event = events.get(event_id)
        if event is None:
            continue
        for auth_id in event.auth_event_ids:
            if auth_id in region:
                cited_by.setdefault(auth_id, []).append(event_id)
    leads_to_conflicted: set[str] = set()
    stack = list(conflicted)
    while stack:
        for citer in cited_by.get(stack.pop(), ()):
            if citer not in leads_to_conflicted:
                leads_to_conflicted.add(citer)
                stack.append(citer)
    return leads_to_conflicted | (conflicted & below)


def reverse_topological_power_ordering(
    event_ids: Iterable[str],
    events: Mapping[str, Event],
    sender_power: Callable[[Event], PowerLevel],
) -> list[str]:
    """The *reverse topological power ordering* of the events, earliest first.

    Kahn's algorithm on the DAG of auth_events links among the events, taking at each step
    the smallest ready event: the sender with *greater* power level (``sender_power``, read
    from the event's auth events), then the smaller ``origin_server_ts``, then the smaller
    event ID.
    """
    ids = {eid for eid in event_ids if eid in events}
    cited_by: dict[str, list[str]] = {eid: [] for eid in ids}
    waiting_on: dict[str, int] = {}
    for event_id in ids:
        auth_ids = {aid for aid in events[event_id].auth_event_ids if aid in ids}
        auth_ids.discard(event_id)
        waiting_on[event_id] = len(auth_ids)
        for auth_id in auth_ids:
            cited_by[auth_id].append(event_id)

    def sort_key(event_id: str) -> tuple[PowerLevel, int, str]:
        event = events[event_id]
        return (-sender_power(event), event.origin_server_ts, event_id)

    ready = [sort_key(eid) for eid in ids if waiting_on[eid] == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        event_id = heapq.heappop(ready)[2]
        ordered.append(event_id)
        for citer in cited_by[event_id]:
            waiting_on[citer] -= 1
            if waiting_on[citer] == 0:
                heapq.heappush(ready, sort_key(citer))
    if len(ordered) != len(ids):
        stuck = sorted(eid for eid in ids if waiting_on[eid] > 0)
        raise StateResolutionError(f"auth events form a cycle among {stuck[:5]}")
    return ordered


def _power_levels_auth_event(event: Event, events: Mapping[str, Event]) -> str | None:
    """The ``m.room.power_levels`` event among the event's auth events, if any."""
    for auth_id in event.auth_event_ids:
        auth_event = events.get(auth_id)
        if auth_event is not None and auth_event.is_state and auth_event.key == POWER_LEVELS_KEY:
            return auth_id
    return None


def mainline_ordering(
    event_ids: Iterable[str], power_levels_id: str | None, events: Mapping[str, Event]
) -> list[str]:
    """The *mainline ordering based on* the power-levels event ``power_levels_id``.

    The mainline of P = P_0 is [P_0, P_1, ..., P_n], each P_i+1 the power-levels event in
    P_i's auth events. The *mainline position* of an event e is the index i of the first of
    e_1, e_2, ... (e's power-levels auth event, its power-levels auth event, ...) that is on
    the mainline, or ∞ if none is. Events sort by *greater* position first, then smaller
    ``origin_server_ts``, then smaller event ID. Without ``power_levels_id`` every position
    is ∞.
    """
    mainline: dict[str, int] = {}
    p_id = power_levels_id
    while p_id is not None and p_id in events and p_id not in mainline:
        mainline[p_id] = len(mainline)
        p_id = _power_levels_auth_event(events[p_id], events)

    # Position of a power-levels event q taken as some e_j: the index of the first of
    # q, q's power-levels auth event, ... on the mainline. Shared by events citing q.
    known: dict[str, PowerLevel] = {}

    def mainline_position(event: Event) -> PowerLevel:
        walked: list[str] = []
        position: PowerLevel = math.inf
        e_id = _power_levels_auth_event(event, events)
        while e_id is not None:
            if e_id in mainline:
                position = mainline[e_id]
                break
            if e_id in known:
                position = known[e_id]
                break
            if e_id in walked or e_id not in events:
                break
            walked.append(e_id)
            e_id = _power_levels_auth_event(events[e_id], events)
        for w_id in walked:
            known[w_id] = position
        return position

    keys = {
        eid: (-mainline_position(events[eid]), events[eid].origin_server_ts, eid)
        for eid in event_ids
        if eid in events
    }
    return sorted(keys, key=keys.__getitem__)


def _auth_state(
    room_version: RoomVersion,
    event: Event,
    state: Mapping[StateKey, str],
    events: Mapping[str, Event],
    create_event: Event | None,
) -> dict[StateKey, Event]:
    """The state an event is checked against in the iterative auth checks.

    The keys the rules need come from ``state``; a key missing there comes from the event's
    auth events, unless that auth event was rejected. The create event is always there.
    """
    checked: dict[StateKey, Event] = {}
    for auth_id in event.auth_event_ids:
        auth_event = events.get(auth_id)
        if auth_event is not None and auth_event.is_state and not auth_event.rejected:
            checked.setdefault(auth_event.key, auth_event)
    for key in auth_types_for_event(room_version, event.raw):
        current_id = state.get(key)
        if current_id is not None and current_id in events:
            checked[key] = events[current_id]
    if create_event is not None:
        checked.setdefault(CREATE_KEY, create_event)
    return checked


def _failed_auth_against_auth_chain(
    event: Event, events: Mapping[str, Event], create_event: Event | None
) -> bool:
    """Whether the event fails the authorisation rules against its own auth events."""
    auth_events = [events[aid] for aid in event.auth_event_ids if aid in events]
    try:
        check_auth_rules(event, auth_events, create_event)
    except AuthError:
        return True
    return False


def iterative_auth_checks(
    room_version: RoomVersion,
    initial_state: Mapping[StateKey, str],
    event_ids: Iterable[str],
    events: Mapping[str, Event],
    create_event: Event | None = None,
) -> dict[StateKey, str]:
    """The *iterative auth checks algorithm*: apply each state event, in order, to a copy of
    ``initial_state`` if the authorisation rules allow it there, and ignore it otherwise.

    ``create_event`` is the room's create event for v12, whose events do not cite it; it is
    part of every state checked against. Previously rejected events are handled per the
    module doc; events not in ``events`` and non-state events are skipped.
    """
    state = dict(initial_state)
    for event_id in event_ids:
        event = events.get(event_id)
        if event is None or not event.is_state:
            continue
        if event.rejected and _failed_auth_against_auth_chain(event, events, create_event):
            continue
        checked = _auth_state(room_version, event, state, events, create_event)
        try:
            check_state_dependent_auth_rules(event, checked)
        except AuthError:
            continue
        state[event.key] = event_id
    return state


# -- the algorithm -----------------------------------------------------------------------------


def _full_conflicted_set(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    conflicted: set[str],
    events: Mapping[str, Event],
) -> set[str]:
    """The conflicted state set, the auth difference and (v12) the conflicted state
    subgraph; only state events the source has."""
    full = conflicted | _auth_difference(state_sets, events)
    if room_version.state_res is StateResAlgorithm.V2_1:
        full |= _conflicted_state_subgraph(conflicted, events)
    return {eid for eid in full if eid in events and events[eid].is_state}


def _sender_power(
    event: Event, events: Mapping[str, Event], create_event: Event | None
) -> PowerLevel:
    """The sender's power level "when looking at [the event's] auth_events"."""
    state: dict[StateKey, Event] = {}
    for auth_id in event.auth_event_ids:
        auth_event = events.get(auth_id)
        if auth_event is not None and auth_event.is_state:
            state.setdefault(auth_event.key, auth_event)
    if create_event is not None:
        state.setdefault(CREATE_KEY, create_event)
    return get_user_power_level(event.sender, state)


def _step_1_sorted_power_events(
    full_conflicted: set[str], events: Mapping[str, Event], create_event: Event | None
) -> list[str]:
    """1. The power events of the full conflicted set, enlarged with their auth chains
    within it, in reverse topological power ordering."""
    selected: set[str] = set()
    stack = [eid for eid in full_conflicted if is_power_event(events[eid])]
    while stack:
        event_id = stack.pop()
        if event_id in selected:
            continue
        selected.add(event_id)
        stack.extend(aid for aid in events[event_id].auth_event_ids if aid in full_conflicted)
    return reverse_topological_power_ordering(
        selected, events, lambda event: _sender_power(event, events, create_event)
    )


def _step_3_sorted_other_events(
    full_conflicted: set[str],
    power_events: Sequence[str],
    partial_state: Mapping[StateKey, str],
    events: Mapping[str, Event],
) -> list[str]:
    """3. The rest of the full conflicted set in mainline ordering, based on the power
    levels of the partially resolved state."""
    remaining = full_conflicted.difference(power_events)
    return mainline_ordering(remaining, partial_state.get(POWER_LEVELS_KEY), events)


async def _room_create_event(room_version: RoomVersion, loader: _EventLoader) -> Event | None:
    """(v12) The create event, whose ID is the room ID with ``$`` for ``!``; None before v12,
    where every event cites it."""
    room_id = loader.room_id
    if not room_version.room_id_is_create_event_id or not room_id:
        return None
    create_id = "$" + room_id[1:]
    await loader.fetch([create_id])
    return loader.events.get(create_id)


async def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    source: EventSource,
) -> dict[StateKey, str]:
    """The *resolution* of the state maps ``state_sets`` ((type, state_key) -> event ID)."""
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted

    loader = _EventLoader(source)
    await loader.load_auth_closure(eid for state in state_sets for eid in state.values())
    create_event = await _room_create_event(room_version, loader)
    events = loader.events
    conflicted_ids = set().union(*conflicted.values())
    full_conflicted = _full_conflicted_set(room_version, state_sets, conflicted_ids, events)

    # 1. Select X, the power events of the full conflicted set and their auth chains in
    #    it, sorted in reverse topological power ordering.
    power_events = _step_1_sorted_power_events(full_conflicted, events, create_event)

    # 2. Iterative auth checks of X, from the unconflicted state map (v12: an empty map).
    if room_version.state_res is StateResAlgorithm.V2_1:
        initial_state: dict[StateKey, str] = {}
    else:
        initial_state = unconflicted
    partial_state = iterative_auth_checks(
        room_version, initial_state, power_events, events, create_event
    )

    # 3. The remaining events, in mainline ordering based on the resolved power levels.
    other_events = _step_3_sorted_other_events(full_conflicted, power_events, partial_state, events)

    # 4. Iterative auth checks of those, from the partially resolved state.
    resolved = iterative_auth_checks(
        room_version, partial_state, other_events, events, create_event
    )

    # 5. The unconflicted state map wins over whatever step 4 left at its keys.
    resolved.update(unconflicted)
    return resolved


# -- the definitions on their own, through a source ------------------------------------------


async def auth_chain(event_ids: Iterable[str], source: EventSource) -> set[str]:
    """The *auth chain* of the events: every event reachable through auth_events links.

    A given event is in the result only if another given event leads to it.
    """
    starts = list(event_ids)
    loader = _EventLoader(source)
    await loader.load_auth_closure(starts)
    return _reach(starts, loader.events, include_starts=False)


async def auth_difference(
    state_sets: Sequence[Mapping[StateKey, str]], source: EventSource
) -> set[str]:
    """The *auth difference* of the state maps, ∪ C_i − ∩ C_i (C_i includes S_i's events)."""
    loader = _EventLoader(source)
    await loader.load_auth_closure(eid for state in state_sets for eid in state.values())
    return _auth_difference(state_sets, loader.events)


async def conflicted_state_subgraph(
    conflicted_event_ids: Iterable[str], source: EventSource
) -> set[str]:
    """(v12) The *conflicted state subgraph* of the given conflicted state set."""
    conflicted = set(conflicted_event_ids)
    loader = _EventLoader(source)
    await loader.load_auth_closure(conflicted)
    return _conflicted_state_subgraph(conflicted, loader.events)
