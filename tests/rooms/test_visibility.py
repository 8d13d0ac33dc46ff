"""History visibility rules (node/rooms/visibility.py), table-driven.

Spec: content/client-server-api/modules/history_visibility.md "Server behaviour".
The room histories below are linear: each is a list of events at positions 1, 2, ...
and the user is ``@me:here``; the history_visibility and membership changes handed to
RoomHistory are read off the list the way node/storage/visibility.py reads them off
the events table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from node.rooms.visibility import (
    Access,
    ClientEvent,
    RoomHistory,
    StateAtEvent,
    allowed,
    effective_visibility,
    event_visible,
    state_after,
)

ME = "@me:here"
BOB = "@bob:there"
MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban", None)

# -- rules 1-5 -----------------------------------------------------------------------------

# For each history_visibility: the (membership, joined_later) pairs that are allowed.
# Everything else in MEMBERSHIPS x (False, True) is denied.
ALLOWED: dict[str, set[tuple[str | None, bool]]] = {
    # 1. world_readable: anyone.
    "world_readable": {(m, later) for m in MEMBERSHIPS for later in (False, True)},
    # 2. joined at the event, or 3. joined at some later point.
    "shared": {("join", False), *((m, True) for m in MEMBERSHIPS)},
    # 2., or 4. invited at the event.
    "invited": {("join", False), ("join", True), ("invite", False), ("invite", True)},
    # 2. only.
    "joined": {("join", False), ("join", True)},
}


@pytest.mark.parametrize(
    ("visibility", "membership", "joined_later"),
    [
        (v, m, later)
        for v in ("world_readable", "shared", "invited", "joined")
        for m in MEMBERSHIPS
        for later in (False, True)
    ],
)
def test_rules(visibility: str, membership: str | None, joined_later: bool) -> None:
    expected = (membership, joined_later) in ALLOWED[visibility]
    assert allowed(visibility, membership, joined_later) is expected


def test_the_allowed_table_is_not_trivial() -> None:
    # Guard against an ALLOWED table that allows all or nothing for a setting.
    sizes = {v: len(pairs) for v, pairs in ALLOWED.items()}
    assert sizes == {"world_readable": 12, "shared": 7, "invited": 4, "joined": 2}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("world_readable", "world_readable"),
        ("shared", "shared"),
        ("invited", "invited"),
        ("joined", "joined"),
        (None, "shared"),  # no history_visibility
        ("JOINED", "shared"),  # not understood
        ("public", "shared"),
        (5, "shared"),
        (["joined"], "shared"),
    ],
)
def test_effective_visibility(value: object, expected: str) -> None:
    assert effective_visibility(value) == expected


# -- the event itself: history_visibility events and the user's own member events --------


def ev(type_: str, state_key: str | None = None, **content: Any) -> ClientEvent:
    return ClientEvent(type_, state_key, content)


def vis(value: object) -> ClientEvent:
    return ev("m.room.history_visibility", "", history_visibility=value)


def member(user: str, membership: object) -> ClientEvent:
    return ev("m.room.member", user, membership=membership)


MESSAGE = ev("m.room.message", body="hi")


@pytest.mark.parametrize(
    ("user", "event", "before", "expected"),
    [
        # Ordinary events: the state before them decides.
        pytest.param(ME, MESSAGE, StateAtEvent("joined", "join"), True, id="msg-joined-member"),
        pytest.param(ME, MESSAGE, StateAtEvent("joined", "leave"), False, id="msg-joined-left"),
        pytest.param(ME, MESSAGE, StateAtEvent("shared", None, True), True, id="msg-shared-later"),
        pytest.param(ME, MESSAGE, StateAtEvent("shared", None), False, id="msg-shared-never"),
        # history_visibility events: before *or* after.
        pytest.param(ME, vis("world_readable"), StateAtEvent("joined"), True, id="vis-to-wr"),
        pytest.param(ME, vis("joined"), StateAtEvent("world_readable"), True, id="vis-from-wr"),
        pytest.param(ME, vis("joined"), StateAtEvent("shared"), False, id="vis-shared-to-joined"),
        pytest.param(
            ME, vis("shared"), StateAtEvent("invited", "invite"), True, id="vis-invited-to-shared"
        ),
        pytest.param(
            ME, vis("invited"), StateAtEvent("shared", "invite"), True, id="vis-shared-to-invited"
        ),
        pytest.param(ME, vis("bogus"), StateAtEvent("joined"), False, id="vis-to-unknown"),
        pytest.param(
            ME, vis("bogus"), StateAtEvent("joined", None, True), True, id="vis-unknown-is-shared"
        ),
        # The user's own member events: before *or* after.
        pytest.param(ME, member(ME, "join"), StateAtEvent("joined"), True, id="own-join"),
        pytest.param(ME, member(ME, "leave"), StateAtEvent("joined", "join"), True, id="own-leave"),
        pytest.param(ME, member(ME, "ban"), StateAtEvent("joined", "join"), True, id="own-kickban"),
        pytest.param(
            ME, member(ME, "invite"), StateAtEvent("invited", "leave"), True, id="own-invite-inv"
        ),
        pytest.param(
            ME, member(ME, "invite"), StateAtEvent("joined", "leave"), False, id="own-invite-joined"
        ),
        # Rejecting an invite under "joined": neither side allows it (Synapse shows it).
        pytest.param(
            ME, member(ME, "leave"), StateAtEvent("joined", "invite"), False, id="own-reject"
        ),
        pytest.param(ME, member(ME, "ban"), StateAtEvent("joined", "leave"), False, id="own-ban"),
        pytest.param(ME, member(ME, 7), StateAtEvent("joined", "leave"), False, id="own-bad"),
        # Someone else's member event is an ordinary state event.
        pytest.param(
            ME, member(BOB, "join"), StateAtEvent("joined", "leave"), False, id="other-join"
        ),
        pytest.param(ME, member(BOB, "leave"), StateAtEvent("joined", "join"), True, id="other-in"),
        # A user whose membership does not count (forgot the room).
        pytest.param(None, member(ME, "join"), StateAtEvent("joined"), False, id="stranger-own"),
        pytest.param(None, vis("world_readable"), StateAtEvent("joined"), True, id="stranger-wr"),
        # Not state: the type alone does not make a change.
        pytest.param(
            ME,
            ev("m.room.history_visibility", None, history_visibility="world_readable"),
            StateAtEvent("joined"),
            False,
            id="vis-type-not-state",
        ),
        pytest.param(
            ME,
            ev("m.room.history_visibility", "x", history_visibility="world_readable"),
            StateAtEvent("joined"),
            False,
            id="vis-other-state-key",
        ),
    ],
)
def test_event_visible(
    user: str | None, event: ClientEvent, before: StateAtEvent, expected: bool
) -> None:
    assert event_visible(user, event, before) is expected


def test_state_after() -> None:
    before = StateAtEvent("shared", "join", True)
    assert state_after(ME, vis("joined"), before) == StateAtEvent("joined", "join", True)
    assert state_after(ME, member(ME, "leave"), before) == StateAtEvent("shared", "leave", True)
    assert state_after(ME, member(BOB, "leave"), before) == before
    assert state_after(None, member(ME, "leave"), before) == before
    assert state_after(ME, MESSAGE, before) == before


def test_client_event_from_a_dict() -> None:
    got = ClientEvent.of({"type": "m.room.member", "state_key": ME, "content": {"membership": 1}})
    assert got == ClientEvent("m.room.member", ME, {"membership": 1})
    assert ClientEvent.of({"type": "m.room.message", "content": "x"}) == ClientEvent(
        "m.room.message", None, {}
    )


# -- whole histories -----------------------------------------------------------------------


@dataclass(frozen=True)
class Room:
    """A linear room history: events at positions 1..n, with labels."""

    events: Sequence[tuple[str, ClientEvent]]
    forgotten: bool = False

    def history(self, *, current: Mapping[str, Any] | None = None) -> RoomHistory:
        visibility: list[tuple[int, str]] = []
        membership: list[tuple[int, str | None]] = []
        for position, (_, event) in enumerate(self.events, start=1):
            if event.type == "m.room.history_visibility" and event.state_key == "":
                value = effective_visibility(event.content.get("history_visibility"))
                visibility.append((position, value))
            if event.type == "m.room.member" and event.state_key == ME:
                membership.append((position, event.content.get("membership")))
        current = current or {}
        return RoomHistory(
            ME,
            tuple(visibility),
            tuple(membership),
            current.get("membership", membership[-1][1] if membership else None),
            current.get("visibility", visibility[-1][1] if visibility else "shared"),
            self.forgotten,
        )

    def visible(self) -> list[str]:
        history = self.history()
        return [
            label
            for position, (label, event) in enumerate(self.events, start=1)
            if history.visible(event, position)
        ]

    def position(self, label: str) -> int:
        return [lab for lab, _ in self.events].index(label) + 1


def msg(label: str) -> tuple[str, ClientEvent]:
    return (label, ev("m.room.message", body=label))


def room(*events: tuple[str, ClientEvent], forgotten: bool = False) -> Room:
    start = [("create", ev("m.room.create", "")), ("bob-join", member(BOB, "join"))]
    return Room([*start, *events], forgotten)


def hv(value: str) -> tuple[str, ClientEvent]:
    return (f"hv-{value}", vis(value))


def me(membership: str, label: str | None = None) -> tuple[str, ClientEvent]:
    return (label or f"me-{membership}", member(ME, membership))


HISTORIES: dict[str, tuple[Room, list[str]]] = {
    # shared: everything up to the leave, as the user joined after it.
    "shared-join-leave": (
        room(hv("shared"), msg("before"), me("join"), msg("in"), me("leave"), msg("away")),
        ["create", "bob-join", "hv-shared", "before", "me-join", "in", "me-leave"],
    ),
    # shared, rejoined: what was sent while away is visible again.
    "shared-rejoin": (
        room(
            hv("shared"),
            me("join"),
            me("leave"),
            msg("away"),
            me("join", "rejoin"),
            msg("back"),
        ),
        ["create", "bob-join", "hv-shared", "me-join", "me-leave", "away", "rejoin", "back"],
    ),
    # joined: only while joined; the own join and leave events are visible.
    "joined-join-leave": (
        room(hv("joined"), msg("before"), me("join"), msg("in"), me("leave"), msg("away")),
        # create/bob-join/hv-joined precede the setting: shared then, and the user
        # joined later.
        ["create", "bob-join", "hv-joined", "me-join", "in", "me-leave"],
    ),
    # joined, rejoined: the stretch while away stays hidden.
    "joined-rejoin": (
        room(
            hv("joined"),
            me("join"),
            me("leave"),
            msg("away"),
            me("join", "rejoin"),
            msg("back"),
        ),
        ["create", "bob-join", "hv-joined", "me-join", "me-leave", "rejoin", "back"],
    ),
    # invited: from the invite on.
    "invited": (
        room(
            hv("invited"),
            msg("before"),
            me("invite"),
            msg("invited"),
            me("join"),
            msg("in"),
            me("leave"),
            msg("away"),
        ),
        ["create", "bob-join", "hv-invited", "me-invite", "invited", "me-join", "in", "me-leave"],
    ),
    # invited, invite rejected, joined later: the rejection ends the invited stretch.
    "invited-rejected": (
        room(
            hv("invited"),
            me("invite"),
            msg("invited"),
            me("leave", "reject"),
            msg("between"),
            me("join"),
            msg("in"),
        ),
        ["create", "bob-join", "hv-invited", "me-invite", "invited", "reject", "me-join", "in"],
    ),
    # joined: invited is not enough.
    "joined-invite-not-enough": (
        room(hv("joined"), me("invite"), msg("invited"), me("join"), msg("in")),
        ["create", "bob-join", "hv-joined", "me-join", "in"],
    ),
    # kicked (a leave sent by someone else) and banned: like leaving.
    "kicked": (
        room(hv("joined"), me("join"), msg("in"), me("leave", "kick"), msg("after")),
        ["create", "bob-join", "hv-joined", "me-join", "in", "kick"],
    ),
    "banned": (
        room(hv("shared"), me("join"), msg("in"), me("ban"), msg("after"), hv("joined")),
        ["create", "bob-join", "hv-shared", "me-join", "in", "me-ban"],
    ),
    # The setting changes while the user is away: the value at each event counts.
    "changes-while-away": (
        room(
            hv("shared"),
            me("join"),
            me("leave"),
            msg("away-shared"),
            hv("joined"),
            msg("away-joined"),
            me("join", "rejoin"),
            msg("back"),
        ),
        [
            "create",
            "bob-join",
            "hv-shared",
            "me-join",
            "me-leave",
            "away-shared",
            "hv-joined",
            "rejoin",
            "back",
        ],
    ),
    # world_readable for a while after the user left: visible; back to joined: not,
    # except the event that ends it.
    "world-readable-stretch": (
        room(
            hv("joined"),
            me("join"),
            me("leave"),
            msg("hidden"),
            hv("world_readable"),
            msg("public"),
            hv("joined"),
            msg("private"),
        ),
        [
            "create",
            "bob-join",
            "hv-joined",
            "me-join",
            "me-leave",
            "hv-world_readable",
            "public",
            "hv-joined",
        ],
    ),
    # Never in the room: only what was world_readable.
    "stranger": (
        room(hv("shared"), msg("shared"), hv("world_readable"), msg("public"), hv("invited")),
        ["hv-world_readable", "public", "hv-invited"],
    ),
    # Forgot the room: judged as a stranger, own events included.
    "forgotten": (
        room(
            hv("shared"),
            me("join"),
            msg("in"),
            hv("world_readable"),
            msg("public"),
            me("leave"),
            msg("after"),
            forgotten=True,
        ),
        ["hv-world_readable", "public", "me-leave", "after"],
    ),
    # Banned without ever joining, invited vis: the ban ends nothing visible.
    "invited-then-banned": (
        room(hv("invited"), me("invite"), msg("invited"), me("ban"), msg("after")),
        ["me-invite", "invited", "me-ban"],
    ),
}


@pytest.mark.parametrize("name", list(HISTORIES))
def test_histories(name: str) -> None:
    history_room, expected = HISTORIES[name]
    assert history_room.visible() == expected


def test_state_at_each_event() -> None:
    r = room(hv("invited"), msg("a"), me("invite"), msg("b"), me("join"), msg("c"), me("leave"))
    h = r.history()
    got = {label: h.state_at(r.position(label)) for label, _ in r.events}
    assert got == {
        "create": StateAtEvent("shared", None, True),
        "bob-join": StateAtEvent("shared", None, True),
        "hv-invited": StateAtEvent("shared", None, True),  # the value before it
        "a": StateAtEvent("invited", None, True),
        "me-invite": StateAtEvent("invited", None, True),
        "b": StateAtEvent("invited", "invite", True),
        "me-join": StateAtEvent("invited", "invite", False),  # no join after this one
        "c": StateAtEvent("invited", "join", False),
        "me-leave": StateAtEvent("invited", "join", False),
    }


# -- access --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("membership_changes", "current_membership", "current_visibility", "forgotten", "access"),
    [
        ([(5, "join")], "join", "joined", False, Access.JOINED),
        ([(5, "join"), (7, "leave")], "leave", "joined", False, Access.DEPARTED),
        ([(5, "join"), (7, "ban")], "ban", "shared", False, Access.DEPARTED),
        ([(5, "join"), (7, "leave"), (9, "invite")], "invite", "joined", False, Access.DEPARTED),
        ([(5, "join"), (7, "leave")], "leave", "joined", True, Access.NONE),
        ([(5, "join"), (7, "leave")], "leave", "world_readable", True, Access.PEEKING),
        ([(5, "invite")], "invite", "invited", False, Access.NONE),
        ([(5, "invite")], "invite", "world_readable", False, Access.PEEKING),
        ([(5, "knock")], "knock", "shared", False, Access.NONE),
        ([(5, "ban")], "ban", "shared", False, Access.NONE),
        ([], None, "world_readable", False, Access.PEEKING),
        ([], None, "shared", False, Access.NONE),
    ],
)
def test_access(
    membership_changes: list[tuple[int, str | None]],
    current_membership: str | None,
    current_visibility: str,
    forgotten: bool,
    access: Access,
) -> None:
    h = RoomHistory(
        ME, (), tuple(membership_changes), current_membership, current_visibility, forgotten
    )
    assert h.access is access
    assert h.may_read is (access is not Access.NONE)


@pytest.mark.parametrize(
    ("membership_changes", "current", "left_at"),
    [
        ([(5, "join")], "join", None),
        ([(5, "join"), (7, "leave")], "leave", 7),
        ([(5, "join"), (6, "join"), (7, "ban")], "ban", 7),  # a profile change is no leave
        ([(5, "join"), (7, "leave"), (9, "invite")], "invite", 7),
        ([(5, "join"), (7, "leave"), (9, "join"), (11, "leave")], "leave", 11),
        ([(3, "invite"), (5, "join"), (7, "leave"), (8, "ban")], "ban", 7),
        ([(5, "invite")], "invite", None),  # never joined: not departed
    ],
)
def test_left_at(
    membership_changes: list[tuple[int, str | None]], current: str, left_at: int | None
) -> None:
    h = RoomHistory(ME, (), tuple(membership_changes), current, "shared")
    assert h.left_at == left_at


# -- skipping hidden stretches -------------------------------------------------------------


def _pad(r: Room, n: int) -> Room:
    """``r`` followed by ``n`` messages."""
    return Room([*r.events, *(msg(f"tail{i}") for i in range(n))], r.forgotten)


@pytest.mark.parametrize("name", list(HISTORIES))
def test_skipping_never_passes_a_visible_event(name: str) -> None:
    r = _pad(HISTORIES[name][0], 3)
    h = r.history()
    n = len(r.events)
    shown = {p for p in range(1, n + 1) if h.visible(r.events[p - 1][1], p)}
    for cursor in range(0, n + 2):
        back = h.backward_from(cursor)
        skipped = range((back or 0) + 1, cursor + 1)
        assert not shown.intersection(skipped), (cursor, back)
        if back is not None:
            assert back <= cursor
        fwd = h.forward_after(cursor)
        skipped = range(cursor + 1, (n if fwd is None else fwd) + 1)
        assert not shown.intersection(skipped), (cursor, fwd)
        if fwd is not None:
            assert fwd >= cursor
    bound = h.upper_bound()
    if bound is not None:
        assert max(shown, default=0) <= bound


def test_skipping_jumps_over_hidden_stretches() -> None:
    # joined: hidden before the join (positions 4-6) and after the leave (9-).
    r = room(hv("joined"), msg("b1"), msg("b2"), msg("b3"), me("join"), msg("in"), me("leave"))
    r = _pad(r, 5)
    h = r.history()
    join, leave = r.position("me-join"), r.position("me-leave")
    assert (join, leave) == (7, 9)
    assert h.backward_from(100) == leave  # from the present straight to the leave
    assert h.backward_from(leave) == leave
    assert h.backward_from(leave - 1) == leave - 1  # "in": visible stretch
    assert h.backward_from(join - 1) == 3  # b1-b3 hidden: on to the hv event
    assert h.forward_after(0) == 0  # create: visible (shared before hv, joined later)
    assert h.forward_after(3) == join - 1  # next read is the join
    assert h.forward_after(leave) is None  # nothing after the leave
    assert h.upper_bound() == leave


def test_skipping_for_a_member_is_a_no_op() -> None:
    r = _pad(room(hv("shared"), me("join"), msg("in")), 3)
    h = r.history()
    assert h.access is Access.JOINED
    for cursor in range(0, len(r.events) + 3):
        assert h.backward_from(cursor) == cursor
        assert h.forward_after(cursor) == cursor
    assert h.upper_bound() is None


def test_nothing_visible_at_all() -> None:
    # Never in a room that was never world_readable: only the hv event at 3 is left to
    # judge on its own (and it is hidden too: shared before it, and no join later).
    h = RoomHistory(ME, ((3, "joined"),), (), None, "joined")
    assert h.backward_from(50) == 3
    assert h.backward_from(2) is None
    assert h.forward_after(0) == 2
    assert h.forward_after(3) is None
    assert h.upper_bound() == 3
    assert not h.visible(vis("joined"), 3)
    assert not h.visible(MESSAGE, 2)
