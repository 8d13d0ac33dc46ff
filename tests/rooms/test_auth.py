"""Authorisation rules 1-3, auth events selection, rule numbering, and a room walked end to end.

Spec: content/rooms/v10.md, v11.md, v12.md "Authorisation rules"; content/server-server-api.md
"Auth events selection". The room helpers here are shared by tests/rooms/test_auth_*.py.
Expected rules are written with room version 12 numbers; ``rule_number`` (tested below
against the v10/v11 texts) gives the number printed in the older versions' lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from node.events.pdu import (
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    THIRD_PARTY_INVITE,
    Event,
    StateKey,
)
from node.events.room_versions import V10, V11, V12, RoomVersion
from node.rooms.auth import (
    AuthError,
    auth_types_for_event,
    check_auth_rules,
    check_state_dependent_auth_rules,
    check_state_independent_auth_rules,
)
from node.rooms.auth_common import is_valid_user_id, rule_number
from tests.rooms.builders import make_event

VERSIONS = (V10, V11, V12)
VERSION_IDS = [f"v{v.identifier}" for v in VERSIONS]

ALICE = "@alice:a.org"  # sends the create event: creator (v12: infinite power)
MOD = "@mod:b.org"  # power level 50
MOD2 = "@mod2:c.org"  # power level 50, on another server than MOD
BOB = "@bob:b.org"  # power level 0
CAROL = "@carol:c.org"  # not in the room unless a test says so
EVE = "@eve:e.org"  # not in the room unless a test says so


# -- building rooms ----------------------------------------------------------------------------


def room_id(v: RoomVersion) -> str:
    return "!CREATE" if v.room_id_is_create_event_id else "!room:a.org"


def create_event(v: RoomVersion, sender: str = ALICE, **content: Any) -> Event:
    """The room's ``$CREATE`` event (v10: ``creator`` is the sender unless overridden)."""
    body: dict[str, Any] = {"room_version": v.identifier}
    if not v.implicit_room_creator:
        body["creator"] = sender
    body.update(content)
    return make_event(
        "$CREATE", CREATE, sender, body, state_key="", room_version=v, room_id=room_id(v)
    )


def event(
    v: RoomVersion,
    type: str,
    sender: str,
    content: Mapping[str, Any] | None = None,
    *,
    event_id: str = "$EV",
    state_key: str | None = None,
    prev: Iterable[str] = ("$PREV",),
    auth: Iterable[str] = (),
    room: str | None = None,
    **extra: Any,
) -> Event:
    return make_event(
        event_id,
        type,
        sender,
        content,
        state_key=state_key,
        prev=list(prev),
        auth=list(auth),
        room_version=v,
        room_id=room or room_id(v),
        **extra,
    )


def member(
    v: RoomVersion,
    sender: str,
    target: str,
    membership: str,
    *,
    event_id: str = "$EV",
    **content: Any,
) -> Event:
    return event(
        v,
        MEMBER,
        sender,
        {"membership": membership, **content},
        event_id=event_id,
        state_key=target,
    )


def default_users(v: RoomVersion) -> dict[str, int]:
    """The ``users`` of the room's power levels (v12 creators cannot be listed)."""
    users = {MOD: 50, MOD2: 50}
    if not v.privileged_creators:
        users[ALICE] = 100
    return users


def room_state(
    v: RoomVersion,
    *,
    join_rule: str | None = "invite",
    members: Mapping[str, str] | None = None,
    levels: Mapping[str, Any] | None = None,
    create_content: Mapping[str, Any] | None = None,
    power_levels: bool = True,
    extra: Iterable[Event] = (),
) -> dict[StateKey, Event]:
    """A room created by ALICE in which ALICE, MOD, MOD2 and BOB are joined.

    ``members`` overrides memberships (user -> membership); ``levels`` overrides the
    power-levels content; ``join_rule=None`` / ``power_levels=False`` leave those out.
    """
    events = [create_event(v, **(create_content or {}))]
    memberships = {ALICE: "join", MOD: "join", MOD2: "join", BOB: "join", **(members or {})}
    for user, membership in memberships.items():
        name = user[1:].split(":")[0]
        events.append(member(v, user, user, membership, event_id=f"$M_{name}"))
    if power_levels:
        content = {"users": default_users(v), **(levels or {})}
        events.append(event(v, POWER_LEVELS, ALICE, content, event_id="$PL", state_key=""))
    if join_rule is not None:
        rules = {"join_rule": join_rule}
        events.append(event(v, JOIN_RULES, ALICE, rules, event_id="$JR", state_key=""))
    events.extend(extra)
    return {e.key: e for e in events}


def assert_rejected(err: pytest.ExceptionInfo[AuthError], v: RoomVersion, v12_rule: str) -> None:
    """The error names ``v12_rule`` as numbered in ``v``'s text, in the attribute and string."""
    expected = rule_number(v, v12_rule)
    assert err.value.rule == expected, str(err.value)
    assert str(err.value).startswith(f"{expected}: ")


def assert_outcome(check: Any, v: RoomVersion, expect: str | None) -> None:
    """Run ``check()``; ``expect`` None means allowed, else the v12 rule that rejects."""
    if expect is None:
        check()
        return
    with pytest.raises(AuthError) as err:
        check()
    assert_rejected(err, v, expect)


# -- rule numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v12_rule", "v10_v11_rule"),
    [
        pytest.param("1.1", "1.1", id="1.1-unchanged"),
        pytest.param("1.4", "1.4", id="1.4-unchanged"),
        pytest.param("3", "2", id="3-is-2"),
        pytest.param("3.1", "2.1", id="3.1-is-2.1"),
        pytest.param("3.5", "2.5", id="3.5-is-2.5"),
        pytest.param("4", "3", id="4-is-3"),
        pytest.param("5.3.2", "4.3.2", id="5.3.2-is-4.3.2"),
        pytest.param("5.4.1.8", "4.4.1.8", id="5.4.1.8-is-4.4.1.8"),
        pytest.param("7.1", "6.1", id="7.1-is-6.1"),
        pytest.param("10.3", "9.3", id="10.3-is-9.3"),
        pytest.param("10.6.1", "9.5.1", id="10.6.1-is-9.5.1"),
        pytest.param("10.10.1", "9.9.1", id="10.10.1-is-9.9.1"),
    ],
)
def test_rule_numbers_follow_each_versions_text(v12_rule: str, v10_v11_rule: str) -> None:
    assert rule_number(V12, v12_rule) == v12_rule
    assert rule_number(V11, v12_rule) == v10_v11_rule
    assert rule_number(V10, v12_rule) == v10_v11_rule


@pytest.mark.parametrize(
    ("user_id", "valid"),
    [
        ("@alice:example.org", True),
        ("@a.b_c=d-e/f+g:example.org:8448", True),
        ("@alice:1.2.3.4", True),
        ("@alice:[1234:5678::abcd]:5678", True),
        ("@Alice Smith:example.org", True),  # historical localparts are accepted in events
        ("@:example.org", True),  # even an empty historical localpart
        ("alice:example.org", False),
        ("@alice", False),
        ("@alice:", False),
        ("@alice:exa mple.org", False),
        ("@alice:example.org:port", False),
        ("@al\x00ice:example.org", False),
        ("@" + "a" * 250 + ":example.org", False),  # over 255 bytes
        (42, False),
    ],
)
def test_user_id_validation(user_id: object, valid: bool) -> None:
    assert is_valid_user_id(user_id) is valid


# -- rule 1: m.room.create ----------------------------------------------------------------------


def _v12_create_with_room_id() -> Event:
    e = create_event(V12)
    return Event(e.event_id, V12, {**e.raw, "room_id": "!CREATE"})


def _with_prev(e: Event, prev: list[str]) -> Event:
    return Event(e.event_id, e.room_version, {**e.raw, "prev_events": prev})


CREATE_CASES = [
    # (versions, build, expected v12 rule or None)
    pytest.param(VERSIONS, lambda v: create_event(v), None, id="1.5-allow"),
    pytest.param(VERSIONS, lambda v: _with_prev(create_event(v), ["$X"]), "1.1", id="1.1-prev"),
    pytest.param(
        (V10, V11),
        lambda v: make_event(
            "$CREATE",
            CREATE,
            ALICE,
            {"creator": ALICE},
            state_key="",
            room_version=v,
            room_id="!room:b.org",
        ),
        "1.2",
        id="1.2-room-domain-not-sender-domain",
    ),
    pytest.param(
        (V10, V11),
        lambda v: make_event(
            "$CREATE",
            CREATE,
            ALICE,
            {"creator": ALICE},
            state_key="",
            room_version=v,
            room_id="!room:a.org:8448",
        ),
        "1.2",
        id="1.2-room-port-differs",
    ),
    pytest.param((V12,), lambda v: _v12_create_with_room_id(), "1.2", id="1.2-v12-has-room-id"),
    pytest.param(
        VERSIONS, lambda v: create_event(v, room_version="99"), "1.3", id="1.3-unknown-version"
    ),
    pytest.param(VERSIONS, lambda v: create_event(v, room_version=12), "1.3", id="1.3-not-string"),
    pytest.param(VERSIONS, lambda v: create_event(v, room_version="11"), None, id="1.3-known"),
    pytest.param(
        VERSIONS,
        lambda v: make_event(
            "$CREATE", CREATE, ALICE, {}, state_key="", room_version=v, room_id=room_id(v)
        ),
        {V10: "1.4"},  # v10 requires creator; v11+ dropped it
        id="1.4-v10-no-creator",
    ),
    pytest.param(
        (V12,),
        lambda v: create_event(v, additional_creators=[BOB, "@Bob Smith:b.org"]),
        None,
        id="1.4-v12-additional-creators-valid",
    ),
    pytest.param(
        (V12,), lambda v: create_event(v, additional_creators=BOB), "1.4", id="1.4-v12-not-array"
    ),
    pytest.param(
        (V12,),
        lambda v: create_event(v, additional_creators=[BOB, "bob"]),
        "1.4",
        id="1.4-v12-invalid-user-id",
    ),
    pytest.param(
        (V12,), lambda v: create_event(v, additional_creators=[7]), "1.4", id="1.4-v12-non-string"
    ),
    pytest.param(
        (V10, V11),
        lambda v: create_event(v, additional_creators="ignored"),
        None,
        id="1.4-additional-creators-not-validated-before-v12",
    ),
]


@pytest.mark.parametrize(("versions", "build", "expect"), CREATE_CASES)
def test_create_event_rules(versions: tuple[RoomVersion, ...], build: Any, expect: Any) -> None:
    for v in versions:
        e = build(v)
        rule = expect.get(v) if isinstance(expect, dict) else expect
        # Rule 1 decides a create event on its own, whichever entry point is used.
        assert_outcome(lambda e=e: check_auth_rules(e, []), v, rule)
        assert_outcome(lambda e=e: check_state_independent_auth_rules(e, [], None), v, rule)
        assert_outcome(lambda e=e: check_state_dependent_auth_rules(e, {}), v, rule)


# -- rules 2 and 3: the event's auth events -------------------------------------------------------


def _message(v: RoomVersion, auth: list[str], *, sender: str = BOB, **extra: Any) -> Event:
    return event(v, "m.room.message", sender, {"body": "hi"}, auth=auth, **extra)


def _listed(v: RoomVersion, *ids: str) -> list[str]:
    """Auth event IDs for a message from BOB, with the create event where the version lists it."""
    return (["$CREATE"] if not v.room_id_is_create_event_id else []) + list(ids)


def _checks_with_auth(
    v: RoomVersion, e: Event, auth_events: list[Event], create: Event | str | None = "room"
) -> list[Any]:
    """Both entry points that read the auth events; rules 2 and 3 reject in either."""
    create_ev = create_event(v) if create == "room" else create
    assert not isinstance(create_ev, str)
    return [
        lambda: check_state_independent_auth_rules(e, auth_events, create_ev),
        lambda: check_auth_rules(e, auth_events, create_ev),
    ]


def _auth(v: RoomVersion, state: Mapping[StateKey, Event], *keys: StateKey) -> list[Event]:
    keys_with_create = keys if v.room_id_is_create_event_id else ((CREATE, ""), *keys)
    return [state[k] for k in keys_with_create]


PL_KEY: StateKey = (POWER_LEVELS, "")
BOB_KEY: StateKey = (MEMBER, BOB)


def _other_room_pl(v: RoomVersion) -> Event:
    other = room_state(v)[PL_KEY]
    raw = {**other.raw, "room_id": "!other:a.org"}
    return Event(other.event_id, v, raw)


def _rejected(e: Event) -> Event:
    return Event(e.event_id, e.room_version, e.raw, rejected_reason="failed auth")


AUTH_EVENT_CASES = [
    # (name, build(v) -> (event, auth events, create event or "room"), expected v12 rule)
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$M_bob")),
            _auth(v, s, PL_KEY, BOB_KEY),
            "room",
        ),
        {},
        id="3-allow",
    ),
    pytest.param(
        lambda v, s: (_message(v, _listed(v, "$M_bob")), _auth(v, s, BOB_KEY), "room"),
        {},
        id="3-allow-subset-of-selection",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$M_bob", "$M_bob_old")),
            [*_auth(v, s, PL_KEY, BOB_KEY), member(v, BOB, BOB, "invite", event_id="$M_bob_old")],
            "room",
        ),
        {V10: "3.1", V11: "3.1", V12: "3.1"},
        id="3.1-duplicate-member",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$PL")),
            _auth(v, s, PL_KEY),
            "room",
        ),
        {V10: "3.1", V11: "3.1", V12: "3.1"},
        id="3.1-same-event-listed-twice",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$JR")),
            _auth(v, s, PL_KEY, (JOIN_RULES, "")),
            "room",
        ),
        {V10: "3.2", V11: "3.2", V12: "3.2"},
        id="3.2-join-rules-for-a-message",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$M_mod")),
            _auth(v, s, PL_KEY, (MEMBER, MOD)),
            "room",
        ),
        {V10: "3.2", V11: "3.2", V12: "3.2"},
        id="3.2-someone-elses-membership",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$MSG")),
            [*_auth(v, s, PL_KEY), _message(v, [], event_id="$MSG")],
            "room",
        ),
        {V10: "3.2", V11: "3.2", V12: "3.2"},
        id="3.2-not-a-state-event",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, ["$CREATE", "$PL", "$M_bob"]),
            [s[(CREATE, "")], s[PL_KEY], s[BOB_KEY]],
            "room",
        ),
        {V12: "3.2"},  # v12 must never list the create event; v10/v11 must
        id="3.2-v12-create-event-listed",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$M_bob")),
            [*_auth(v, s, BOB_KEY), _rejected(s[PL_KEY])],
            "room",
        ),
        {V10: "3.3", V11: "3.3", V12: "3.3"},
        id="3.3-rejected-auth-event",
    ),
    pytest.param(
        lambda v, s: (_message(v, ["$PL", "$M_bob"]), [s[PL_KEY], s[BOB_KEY]], "room"),
        {V10: "3.4", V11: "3.4"},  # v12 has no rule 3.4: the create event is never listed
        id="3.4-no-create-event",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$M_bob")),
            [*_auth(v, s, BOB_KEY), _other_room_pl(v)],
            "room",
        ),
        {V10: "3.5", V11: "3.5", V12: "3.5"},
        id="3.5-auth-event-in-other-room",
    ),
    pytest.param(
        lambda v, s: (_message(v, _listed(v, "$PL", "$M_bob")), _auth(v, s, BOB_KEY), "room"),
        {V10: "3", V11: "3", V12: "3"},
        id="3-listed-auth-event-missing",
    ),
    pytest.param(
        lambda v, s: (_message(v, _listed(v, "$M_bob")), _auth(v, s, BOB_KEY, PL_KEY), "room"),
        {V10: "3", V11: "3", V12: "3"},
        id="3-unlisted-auth-event-given",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$PL", "$M_bob"), room="!OTHER"),
            _auth(v, s, PL_KEY, BOB_KEY),
            "room",
        ),
        {V10: "3.5", V11: "3.5", V12: "2"},  # v10/v11: the auth events are in another room
        id="2-v12-room-id-not-create-event-id",
    ),
    pytest.param(
        lambda v, s: (_message(v, _listed(v, "$M_bob")), _auth(v, s, BOB_KEY), None),
        {V12: "2"},  # v10/v11 read the create event from the auth events instead
        id="2-v12-create-event-unknown",
    ),
    pytest.param(
        lambda v, s: (
            _message(v, _listed(v, "$M_bob")),
            _auth(v, s, BOB_KEY),
            _rejected(create_event(v)),
        ),
        {V12: "2"},
        id="2-v12-create-event-rejected",
    ),
]


@pytest.mark.parametrize("v", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(("build", "expect"), AUTH_EVENT_CASES)
def test_auth_event_rules(v: RoomVersion, build: Any, expect: dict[RoomVersion, str]) -> None:
    state = room_state(v)
    e, auth_events, create = build(v, state)
    for check in _checks_with_auth(v, e, auth_events, create):
        assert_outcome(check, v, expect.get(v))


def _message_with_room_id(v: RoomVersion, room: str) -> Event:
    return event(v, "m.room.message", BOB, {"body": "hi"}, room=room)


def test_v12_room_id_rule_also_checked_against_state() -> None:
    state = room_state(V12)
    check_state_dependent_auth_rules(_message_with_room_id(V12, "!CREATE"), state)
    with pytest.raises(AuthError) as err:
        check_state_dependent_auth_rules(_message_with_room_id(V12, "!OTHER"), state)
    assert_rejected(err, V12, "2")


@pytest.mark.parametrize("v", VERSIONS, ids=VERSION_IDS)
def test_state_without_create_event_is_rejected(v: RoomVersion) -> None:
    state = room_state(v)
    del state[(CREATE, "")]
    with pytest.raises(AuthError) as err:
        check_state_dependent_auth_rules(_message(v, []), state)
    assert_rejected(err, v, "2" if v is V12 else "3.4")


# -- auth events selection -------------------------------------------------------------------------


def _pdu(type: str, sender: str, content: Mapping[str, Any], state_key: str | None = None) -> Any:
    pdu: dict[str, Any] = {"type": type, "sender": sender, "content": dict(content)}
    if state_key is not None:
        pdu["state_key"] = state_key
    return pdu


SIGNED = {"mxid": EVE, "token": "tok", "signatures": {}}
SELECTION_CASES = [
    pytest.param(_pdu(CREATE, ALICE, {}, ""), set(), id="create-has-none"),
    pytest.param(
        _pdu("m.room.message", BOB, {}), {(POWER_LEVELS, ""), (MEMBER, BOB)}, id="message"
    ),
    pytest.param(
        _pdu("m.room.name", BOB, {}, ""), {(POWER_LEVELS, ""), (MEMBER, BOB)}, id="state-event"
    ),
    pytest.param(
        _pdu(MEMBER, EVE, {"membership": "join"}, EVE),
        {(POWER_LEVELS, ""), (MEMBER, EVE), (JOIN_RULES, "")},
        id="join",
    ),
    pytest.param(
        _pdu(MEMBER, EVE, {"membership": "join", "join_authorised_via_users_server": MOD}, EVE),
        {(POWER_LEVELS, ""), (MEMBER, EVE), (JOIN_RULES, ""), (MEMBER, MOD)},
        id="restricted-join",
    ),
    pytest.param(
        _pdu(MEMBER, BOB, {"membership": "invite"}, EVE),
        {(POWER_LEVELS, ""), (MEMBER, BOB), (MEMBER, EVE), (JOIN_RULES, "")},
        id="invite",
    ),
    pytest.param(
        _pdu(MEMBER, BOB, {"membership": "invite", "third_party_invite": {"signed": SIGNED}}, EVE),
        {
            (POWER_LEVELS, ""),
            (MEMBER, BOB),
            (MEMBER, EVE),
            (JOIN_RULES, ""),
            (THIRD_PARTY_INVITE, "tok"),
        },
        id="third-party-invite",
    ),
    pytest.param(
        _pdu(MEMBER, EVE, {"membership": "knock"}, EVE),
        {(POWER_LEVELS, ""), (MEMBER, EVE), (JOIN_RULES, "")},
        id="knock",
    ),
    pytest.param(
        _pdu(MEMBER, MOD, {"membership": "leave"}, BOB),
        {(POWER_LEVELS, ""), (MEMBER, MOD), (MEMBER, BOB)},
        id="kick-no-join-rules",
    ),
    pytest.param(
        _pdu(MEMBER, MOD, {"membership": "ban", "join_authorised_via_users_server": MOD2}, BOB),
        {(POWER_LEVELS, ""), (MEMBER, MOD), (MEMBER, BOB)},
        id="authoriser-only-for-joins",
    ),
    pytest.param(
        _pdu(MEMBER, BOB, {"membership": "invite", "third_party_invite": "junk"}, EVE),
        {(POWER_LEVELS, ""), (MEMBER, BOB), (MEMBER, EVE), (JOIN_RULES, "")},
        id="malformed-third-party-invite",
    ),
]


@pytest.mark.parametrize("v", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize(("pdu", "expected"), SELECTION_CASES)
def test_auth_events_selection(v: RoomVersion, pdu: Any, expected: set[StateKey]) -> None:
    if expected and not v.room_id_is_create_event_id:
        expected = expected | {(CREATE, "")}  # v12 never selects the create event
    assert auth_types_for_event(v, pdu) == expected


# -- a room from its first event, every event checked against its auth events --------------------


class Room:
    """Builds events the way a server would (auth events chosen from current state)."""

    def __init__(self, v: RoomVersion) -> None:
        self.v = v
        self.create = create_event(v)
        self.state: dict[StateKey, Event] = {}
        self.last = "$CREATE"
        self.count = 0
        self.check_and_apply(self.create)

    def build(self, type: str, sender: str, content: Mapping[str, Any], **kw: Any) -> Event:
        self.count += 1
        pdu = {"type": type, "sender": sender, "content": dict(content), **kw}
        keys = auth_types_for_event(self.v, pdu)
        auth = [self.state[k].event_id for k in sorted(keys) if k in self.state]
        return event(
            self.v, type, sender, content, event_id=f"$E{self.count}", prev=[self.last],
            auth=auth, **kw,
        )  # fmt: skip

    def check_and_apply(self, e: Event) -> None:
        by_id = {x.event_id: x for x in self.state.values()}
        auth_events = [by_id[i] for i in e.auth_event_ids]
        create = self.create if self.v.room_id_is_create_event_id else None
        check_auth_rules(e, auth_events, create)
        self.last = e.event_id
        if e.is_state:
            self.state[e.key] = e


@pytest.mark.parametrize("v", VERSIONS, ids=VERSION_IDS)
def test_a_room_walked_through_its_auth_events(v: RoomVersion) -> None:
    room = Room(v)
    send = room.check_and_apply
    send(room.build(MEMBER, ALICE, {"membership": "join"}, state_key=ALICE))
    users = default_users(v)
    send(room.build(POWER_LEVELS, ALICE, {"users": users}, state_key=""))
    send(room.build(JOIN_RULES, ALICE, {"join_rule": "invite"}, state_key=""))
    send(room.build(MEMBER, ALICE, {"membership": "invite"}, state_key=BOB))
    send(room.build(MEMBER, BOB, {"membership": "join"}, state_key=BOB))
    send(room.build("m.room.message", BOB, {"body": "hello"}))

    with pytest.raises(AuthError) as err:  # BOB (0) cannot set the name (state_default 50)
        send(room.build("m.room.name", BOB, {"name": "x"}, state_key=""))
    assert_rejected(err, v, "8")
    with pytest.raises(AuthError) as err:  # EVE was not invited
        send(room.build(MEMBER, EVE, {"membership": "join"}, state_key=EVE))
    assert_rejected(err, v, "5.3.4")

    send(room.build(MEMBER, ALICE, {"membership": "ban"}, state_key=BOB))
    assert room.state[(MEMBER, BOB)].membership == "ban"
    with pytest.raises(AuthError) as err:
        send(room.build("m.room.message", BOB, {"body": "still here?"}))
    assert_rejected(err, v, "6")
