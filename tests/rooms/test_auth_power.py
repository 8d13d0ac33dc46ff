"""Authorisation rules 4 and 6-11 (v10/v11: 3 and 5-10), power levels, creators, redactions.

Spec: content/rooms/v12.md "Authorisation rules" (rules 4, 6-11, the power-level and
creator notes), content/server-server-api.md "Definitions" (levels and defaults),
content/rooms/fragments/v3-handling-redactions.md. Rows run in room versions 10, 11 and 12
unless they say otherwise; expected rules use v12 numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from node.events.pdu import CREATE, POWER_LEVELS, REDACTION, THIRD_PARTY_INVITE, Event
from node.events.room_versions import V10, V11, V12, RoomVersion
from node.rooms.auth import (
    check_state_dependent_auth_rules,
    get_room_creators,
    get_user_power_level,
    redaction_is_allowed,
)
from tests.rooms.test_auth import (
    ALICE,
    BOB,
    CAROL,
    EVE,
    MOD,
    MOD2,
    VERSION_IDS,
    VERSIONS,
    assert_outcome,
    create_event,
    default_users,
    event,
    room_state,
)

Build = Callable[[RoomVersion], Event]
versions = pytest.mark.parametrize("v", VERSIONS, ids=VERSION_IDS)


def E(
    sender: str, type: str = "m.room.message", state_key: str | None = None, **content: Any
) -> Build:
    def build(v: RoomVersion) -> Event:
        return event(v, type, sender, content or {"body": "x"}, state_key=state_key)

    return build


def check(v: RoomVersion, build: Build, state: Mapping[str, Any], expect: str | None) -> None:
    e, room = build(v), room_state(v, **state)
    assert_outcome(lambda: check_state_dependent_auth_rules(e, room), v, expect)


def rows(*cases: Any) -> Any:
    return pytest.mark.parametrize(("build", "state", "expect"), cases)


NO_FEDERATION = {"create_content": {"m.federate": False}}


# -- rules 4, 6, 7, 8, 9, 11 ----------------------------------------------------------------------


@versions
@rows(
    pytest.param(E(BOB), {}, None, id="11-message-allowed"),
    pytest.param(E(BOB), NO_FEDERATION, "4", id="4-no-federation-other-server"),
    pytest.param(E(ALICE), NO_FEDERATION, None, id="4-no-federation-creator-server"),
    pytest.param(
        E(ALICE),
        {"create_content": {"m.federate": "false"}},
        None,
        id="4-only-boolean-false-counts",
    ),
    pytest.param(E(EVE), {}, "6", id="6-sender-not-in-room"),
    pytest.param(E(EVE), {"members": {EVE: "invite"}}, "6", id="6-sender-invited"),
    pytest.param(E(BOB), {"members": {BOB: "leave"}}, "6", id="6-sender-left"),
    pytest.param(E(BOB), {"members": {BOB: "ban"}}, "6", id="6-sender-banned"),
    pytest.param(E(BOB), {"members": {BOB: 5}}, "6", id="6-malformed-membership-not-joined"),
    pytest.param(
        E(BOB, THIRD_PARTY_INVITE, "tok", display_name="x"), {}, None, id="7.1-at-invite-level"
    ),
    pytest.param(
        E(BOB, THIRD_PARTY_INVITE, "tok", display_name="x"),
        {"levels": {"invite": 10}},
        "7.1",
        id="7.1-below-invite-level",
    ),
    pytest.param(
        E(BOB, THIRD_PARTY_INVITE, "tok", display_name="x"),
        {"levels": {"events": {THIRD_PARTY_INVITE: 100}}},
        None,
        id="7.1-events-level-not-used",
    ),
    pytest.param(
        E(EVE, THIRD_PARTY_INVITE, "tok", display_name="x"), {}, "6", id="7-after-6-not-joined"
    ),
    pytest.param(E(BOB, "m.room.name", "", name="x"), {}, "8", id="8-state-default-50"),
    pytest.param(E(MOD, "m.room.name", "", name="x"), {}, None, id="8-state-default-met"),
    pytest.param(
        E(MOD, "m.room.name", "", name="x"),
        {"levels": {"events": {"m.room.name": 51}}},
        "8",
        id="8-events-override-state",
    ),
    pytest.param(
        E(BOB, "m.room.name", "", name="x"),
        {"levels": {"state_default": 0}},
        None,
        id="8-state-default-lowered",
    ),
    pytest.param(E(BOB), {"levels": {"events_default": 1}}, "8", id="8-events-default"),
    pytest.param(
        E(BOB), {"levels": {"events": {"m.room.message": 1}}}, "8", id="8-events-for-message"
    ),
    pytest.param(
        E(BOB, "m.room.name", "", name="x"),
        {"power_levels": False},
        "8",
        id="8-no-power-levels-state-default-50",
    ),
    pytest.param(E(BOB), {"power_levels": False}, None, id="8-no-power-levels-events-default-0"),
    pytest.param(
        E(BOB, REDACTION, redacts="$OTHER"), {}, None, id="8-redaction-redact-level-not-used"
    ),
    pytest.param(
        E(MOD, REDACTION, redacts="$OTHER"),
        {"levels": {"events": {REDACTION: 60}}},
        "8",
        id="8-redaction-needs-its-event-level",
    ),
    pytest.param(E(MOD, "m.custom", BOB, a=1), {}, "9", id="9-state-key-other-user"),
    pytest.param(E(MOD, "m.custom", MOD, a=1), {}, None, id="9-state-key-own-user"),
    pytest.param(E(MOD, "m.custom", "bob", a=1), {}, None, id="9-state-key-no-at"),
)
def test_non_member_rules(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    check(v, build, state, expect)


# -- rule 10: m.room.power_levels -----------------------------------------------------------------


def PL(sender: str = MOD, *, users: Any = None, **content: Any) -> Build:
    """A power-levels event; ``users`` defaults to the room's current users."""

    def build(v: RoomVersion) -> Event:
        body = {"users": default_users(v) if users is None else users, **content}
        return event(v, POWER_LEVELS, sender, body, state_key="")

    return build


# MOD (50) may send power levels in these rooms; ALICE is 100 (v10/v11) or a creator (v12).
MOD_SENDS = {"levels": {"events": {POWER_LEVELS: 50}}}


def with_levels(**levels: Any) -> dict[str, Any]:
    return {"levels": {"events": {POWER_LEVELS: 50}, **levels}}


def users_plus(**extra: int) -> Callable[[RoomVersion], dict[str, int]]:
    return lambda v: {**default_users(v), **extra}


def PLU(sender: str = MOD, change: Mapping[str, int | None] = {}, **content: Any) -> Build:
    """Power levels with the room's users changed by ``change`` (None removes)."""

    def build(v: RoomVersion) -> Event:
        users: dict[str, Any] = dict(default_users(v))
        for user, level in change.items():
            if level is None:
                users.pop(user, None)
            else:
                users[user] = level
        body = {"users": users, "events": {POWER_LEVELS: 50}, **content}
        return event(v, POWER_LEVELS, sender, body, state_key="")

    return build


@versions
@rows(
    # 10.1 - 10.3: integers and user IDs only (v10+ has no string levels)
    pytest.param(PL(ban="50", events={POWER_LEVELS: 50}), MOD_SENDS, "10.1", id="10.1-string"),
    pytest.param(PL(kick=50.0, events={POWER_LEVELS: 50}), MOD_SENDS, "10.1", id="10.1-float"),
    pytest.param(PL(invite=True, events={POWER_LEVELS: 50}), MOD_SENDS, "10.1", id="10.1-bool"),
    pytest.param(PL(users_default=None), MOD_SENDS, "10.1", id="10.1-null"),
    pytest.param(PL(events={"m.x": "1"}), MOD_SENDS, "10.2", id="10.2-events-string-value"),
    pytest.param(PL(events=[]), MOD_SENDS, "10.2", id="10.2-events-not-object"),
    pytest.param(PL(notifications={"room": 5.5}), MOD_SENDS, "10.2", id="10.2-notifications"),
    pytest.param(PL(users=[]), MOD_SENDS, "10.3", id="10.3-users-not-object"),
    pytest.param(PL(users={"bob": 0}), MOD_SENDS, "10.3", id="10.3-invalid-user-id"),
    pytest.param(PL(users={BOB: "0"}), MOD_SENDS, "10.3", id="10.3-string-level"),
    pytest.param(
        PLU(change={"@Bob Smith:b.org": 0}), MOD_SENDS, None, id="10.3-historical-user-id-ok"
    ),
    # 10.5: nothing to compare with
    pytest.param(
        PL(ALICE, users={BOB: 1000}, ban=1000), {"power_levels": False}, None, id="10.5-first"
    ),
    pytest.param(
        PL(BOB, users={BOB: 100}), {"power_levels": False}, "8", id="10.5-still-needs-rule-8"
    ),
    # 10.6: top-level levels
    pytest.param(PLU(ban=40), MOD_SENDS, None, id="10.6-lower-ban-from-default"),
    pytest.param(PLU(kick=60), MOD_SENDS, "10.6.2", id="10.6.2-raise-above-own"),
    pytest.param(PLU(invite=60), MOD_SENDS, "10.6.2", id="10.6.2-add-above-own"),
    pytest.param(PLU(invite=10), MOD_SENDS, None, id="10.6-add-below-own"),
    pytest.param(PLU(redact=50), with_levels(redact=70), "10.6.1", id="10.6.1-lower-from-above"),
    pytest.param(PLU(), with_levels(redact=70), "10.6.1", id="10.6.1-remove-above-own"),
    pytest.param(PLU(redact=70), with_levels(redact=70), None, id="10.6-unchanged-above-own"),
    pytest.param(PLU(), with_levels(redact=40), None, id="10.6-remove-below-own"),
    # 10.7 / 10.8: events and notifications
    pytest.param(
        PLU(events={POWER_LEVELS: 50, "m.room.name": 50}),
        with_levels(events={POWER_LEVELS: 50, "m.room.name": 70}),
        "10.7.1",
        id="10.7.1-change-event-level-above-own",
    ),
    pytest.param(
        PLU(events={POWER_LEVELS: 50}),
        with_levels(events={POWER_LEVELS: 50, "m.room.name": 70}),
        "10.7.1",
        id="10.7.1-remove-event-level-above-own",
    ),
    pytest.param(
        PLU(notifications={"room": 10}),
        with_levels(notifications={"room": 70}),
        "10.7.1",
        id="10.7.1-notifications",
    ),
    pytest.param(
        PLU(events={POWER_LEVELS: 50, "m.x": 60}), MOD_SENDS, "10.8.1", id="10.8.1-add-event"
    ),
    pytest.param(
        PLU(events={POWER_LEVELS: 50, "m.x": 50}), MOD_SENDS, None, id="10.8-add-event-at-own"
    ),
    pytest.param(
        PLU(notifications={"room": 51}), MOD_SENDS, "10.8.1", id="10.8.1-add-notification"
    ),
    pytest.param(
        PLU(events={POWER_LEVELS: 50, "m.x": 70}),
        with_levels(events={POWER_LEVELS: 50, "m.x": 70}),
        None,
        id="10.8-unchanged-event-above-own",
    ),
    # 10.9 / 10.10: users
    pytest.param(PLU(change={BOB: 10}), MOD_SENDS, None, id="10.10-promote-below-own"),
    pytest.param(PLU(change={BOB: 50}), MOD_SENDS, None, id="10.10-promote-to-own"),
    pytest.param(PLU(change={BOB: 51}), MOD_SENDS, "10.10.1", id="10.10.1-promote-above-own"),
    pytest.param(PLU(change={CAROL: 60}), MOD_SENDS, "10.10.1", id="10.10.1-add-above-own"),
    pytest.param(PLU(change={MOD: 60}), MOD_SENDS, "10.10.1", id="10.10.1-raise-self"),
    pytest.param(PLU(change={MOD: 10}), MOD_SENDS, None, id="10.9-demote-self"),
    pytest.param(PLU(change={MOD: None}), MOD_SENDS, None, id="10.9-remove-self"),
    pytest.param(PLU(change={MOD2: 10}), MOD_SENDS, "10.9.1", id="10.9.1-demote-equal"),
    pytest.param(PLU(change={MOD2: None}), MOD_SENDS, "10.9.1", id="10.9.1-remove-equal"),
    pytest.param(
        PLU(change={BOB: None}),
        {"levels": {"events": {POWER_LEVELS: 50}, "users": users_plus(**{BOB: 5})}},
        None,
        id="10.9-remove-below",
    ),
)
def test_power_levels_rules(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    levels = state.get("levels")
    if levels is not None and callable(levels.get("users")):
        state = {**state, "levels": {**levels, "users": levels["users"](v)}}
    check(v, build, state, expect)


@pytest.mark.parametrize(
    ("v", "build", "expect"),
    [
        pytest.param(V10, PLU(change={ALICE: 10}), "10.9.1", id="v10-creator-is-100"),
        pytest.param(V11, PLU(change={ALICE: None}), "10.9.1", id="v11-creator-is-100"),
        pytest.param(V10, PLU(ALICE, change={ALICE: 10}), None, id="v10-creator-demotes-self"),
        pytest.param(V12, PLU(change={ALICE: 100}), "10.4", id="10.4-v12-creator-listed"),
        pytest.param(V12, PLU(ALICE, change={ALICE: 100}), "10.4", id="10.4-v12-even-by-self"),
        pytest.param(V12, PLU(change={CAROL: 0}), "10.4", id="10.4-v12-additional-creator"),
        pytest.param(V11, PLU(change={CAROL: 0}), None, id="10.4-v11-additional-not-creator"),
        pytest.param(
            V12, PLU(ALICE, change={MOD: 10**9}, ban=10**9), None, id="v12-creator-sets-any-level"
        ),
        pytest.param(V12, PLU(ALICE, change={MOD2: None}), None, id="v12-creator-removes-anyone"),
    ],
)
def test_power_levels_creators(v: RoomVersion, build: Build, expect: str | None) -> None:
    state = {
        "levels": {"events": {POWER_LEVELS: 50}},
        "create_content": {"additional_creators": [CAROL]},
    }
    check(v, build, state, expect)


# -- power levels and creators read from state ----------------------------------------------------


def _state(v: RoomVersion, with_power_levels: bool, **create_content: Any) -> dict[Any, Event]:
    state = room_state(v, power_levels=with_power_levels, create_content=create_content)
    return state


@pytest.mark.parametrize(
    ("v", "with_power_levels", "create_content", "user", "level"),
    [
        pytest.param(V10, False, {}, ALICE, 100, id="v10-creator-without-power-levels"),
        pytest.param(V10, False, {"creator": CAROL}, CAROL, 100, id="v10-creator-is-content"),
        pytest.param(V10, False, {"creator": CAROL}, ALICE, 0, id="v10-sender-not-creator"),
        pytest.param(V11, False, {"creator": CAROL}, ALICE, 100, id="v11-creator-is-sender"),
        pytest.param(V11, False, {"creator": CAROL}, CAROL, 0, id="v11-content-creator-ignored"),
        pytest.param(V11, False, {}, BOB, 0, id="v11-others-without-power-levels"),
        pytest.param(V10, True, {}, ALICE, 100, id="v10-creator-from-users"),
        pytest.param(V11, True, {}, MOD, 50, id="v11-users"),
        pytest.param(V11, True, {}, BOB, 0, id="v11-users-default"),
        pytest.param(V12, False, {}, ALICE, math.inf, id="v12-creator-infinite"),
        pytest.param(V12, True, {}, ALICE, math.inf, id="v12-creator-infinite-with-levels"),
        pytest.param(
            V12, True, {"additional_creators": [CAROL]}, CAROL, math.inf, id="v12-additional"
        ),
        pytest.param(V12, False, {}, BOB, 0, id="v12-others-without-power-levels"),
        pytest.param(V12, True, {}, MOD, 50, id="v12-users"),
    ],
)
def test_get_user_power_level(
    v: RoomVersion, with_power_levels: bool, create_content: Any, user: str, level: float
) -> None:
    assert get_user_power_level(user, _state(v, with_power_levels, **create_content)) == level


def test_users_default_applies_to_unlisted_users() -> None:
    state = room_state(V11, levels={"users_default": 7})
    assert get_user_power_level(EVE, state) == 7
    assert get_user_power_level(MOD, state) == 50


@pytest.mark.parametrize(
    ("v", "create_content", "creators"),
    [
        pytest.param(V10, {"creator": CAROL}, {CAROL}, id="v10-content-creator"),
        pytest.param(V11, {"additional_creators": [CAROL]}, {ALICE}, id="v11-sender-only"),
        pytest.param(V12, {}, {ALICE}, id="v12-sender"),
        pytest.param(V12, {"additional_creators": [CAROL, BOB]}, {ALICE, CAROL, BOB}, id="v12-all"),
    ],
)
def test_get_room_creators(v: RoomVersion, create_content: Any, creators: set[str]) -> None:
    assert get_room_creators(room_state(v, create_content=create_content)) == creators
    assert get_room_creators({}) == set()


def test_create_event_alone_gives_creator_power() -> None:
    create = create_event(V12)
    assert get_user_power_level(ALICE, {(CREATE, ""): create}) == math.inf


# -- handling redactions --------------------------------------------------------------------------


def _redaction(v: RoomVersion, sender: str, target: str = "$ORIG") -> Event:
    if v.redacts_in_content:
        return event(v, REDACTION, sender, {"redacts": target}, event_id="$RED")
    return event(v, REDACTION, sender, {}, event_id="$RED", redacts=target)


def _original(v: RoomVersion, sender: str) -> Event:
    return event(v, "m.room.message", sender, {"body": "x"}, event_id="$ORIG")


@versions
@pytest.mark.parametrize(
    ("redacter", "author", "levels", "allowed"),
    [
        pytest.param(MOD, BOB, {}, True, id="1-redact-level"),
        pytest.param(MOD2, BOB, {"redact": 60}, False, id="1-below-redact-level-other-server"),
        pytest.param(BOB, MOD, {"redact": 60}, True, id="2-same-server"),
        pytest.param(BOB, BOB, {}, True, id="2-own-event"),
        pytest.param(EVE, BOB, {}, False, id="neither"),
        pytest.param(
            MOD2,
            BOB,
            {"events": {REDACTION: 100}},
            True,
            id="1-holds-without-level-to-send",
        ),
        pytest.param(ALICE, BOB, {"redact": 100}, True, id="creator"),
    ],
)
def test_redaction_is_allowed(
    v: RoomVersion, redacter: str, author: str, levels: Any, allowed: bool
) -> None:
    state = room_state(v, levels=levels)
    assert redaction_is_allowed(_redaction(v, redacter), _original(v, author), state) is allowed


@versions
def test_redaction_must_target_the_original(v: RoomVersion) -> None:
    state = room_state(v)
    original = _original(v, BOB)
    assert not redaction_is_allowed(_redaction(v, MOD, "$ELSE"), original, state)
    # The v10 redaction keeps `redacts` at the top level, v11+ in content: the other place
    # does not count.
    if v.redacts_in_content:
        misplaced = event(v, REDACTION, MOD, {}, event_id="$RED", redacts="$ORIG")
    else:
        misplaced = event(v, REDACTION, MOD, {"redacts": "$ORIG"}, event_id="$RED")
    assert not redaction_is_allowed(misplaced, original, state)
    elsewhere = event(v, "m.room.message", BOB, {}, event_id="$ORIG", room="!elsewhere:b.org")
    assert not redaction_is_allowed(_redaction(v, MOD), elsewhere, state)
