"""Authorisation rule 5 (v10/v11: rule 4): m.room.member events, one table per membership.

Spec: content/rooms/v12.md "Authorisation rules" rule 5; content/server-server-api.md
"Third-party invites". Each row is checked in room versions 10, 11 and 12 against the room
of ``room_state`` (ALICE creator, MOD and MOD2 at 50, BOB at 0, all joined) changed by the
row's state arguments. Expected rules use v12 numbers (v10/v11 number them one lower).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from signedjson.key import decode_signing_key_base64, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from node.events.pdu import MEMBER, THIRD_PARTY_INVITE, Event
from node.events.room_versions import V10, V11, V12, RoomVersion
from node.rooms.auth import check_state_dependent_auth_rules
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
    event,
    room_state,
)

Build = Callable[[RoomVersion], Event]


def M(
    sender: str,
    target: str | None,
    membership: Any,
    *,
    signatures: Mapping[str, Any] | None = None,
    prev: Iterable[str] = ("$PREV",),
    **content: Any,
) -> Build:
    """An m.room.member event from ``sender`` about ``target`` (None: no state_key)."""
    body = dict(content) if membership is ... else {"membership": membership, **content}
    extra = {} if signatures is None else {"signatures": dict(signatures)}

    def build(v: RoomVersion) -> Event:
        return event(v, MEMBER, sender, body, state_key=target, prev=prev, **extra)

    return build


def check(v: RoomVersion, build: Build, state: Mapping[str, Any], expect: str | None) -> None:
    e, room = build(v), room_state(v, **state)
    assert_outcome(lambda: check_state_dependent_auth_rules(e, room), v, expect)


def rows(*cases: Any) -> Any:
    return pytest.mark.parametrize(("build", "state", "expect"), cases)


versions = pytest.mark.parametrize("v", VERSIONS, ids=VERSION_IDS)

# -- 5.1, 5.2, 5.8 and rule 4 before them ---------------------------------------------------------

SIGNED_BY_B = {"b.org": {"ed25519:1": "c2ln"}}


@versions
@rows(
    pytest.param(M(BOB, None, "join"), {}, "5.1", id="5.1-no-state-key"),
    pytest.param(M(BOB, BOB, ..., displayname="b"), {}, "5.1", id="5.1-no-membership"),
    pytest.param(M(BOB, BOB, "dance"), {}, "5.8", id="5.8-unknown-membership"),
    pytest.param(M(BOB, BOB, 1), {}, "5.8", id="5.8-membership-not-a-string"),
    pytest.param(
        M(BOB, BOB, "leave", join_authorised_via_users_server=MOD),
        {},
        "5.2.1",
        id="5.2.1-unsigned-by-authorising-server-on-a-leave",
    ),
    pytest.param(
        M(BOB, BOB, "leave", join_authorised_via_users_server=MOD, signatures=SIGNED_BY_B),
        {},
        None,
        id="5.2.1-signed-by-authorising-server",
    ),
    pytest.param(
        M(BOB, BOB, "leave", join_authorised_via_users_server="mod", signatures=SIGNED_BY_B),
        {},
        "5.2.1",
        id="5.2.1-authoriser-not-a-user-id",
    ),
    pytest.param(
        M(EVE, EVE, "join"),
        {"join_rule": "public", "create_content": {"m.federate": False}},
        "4",
        id="4-no-federation-join-from-other-server",
    ),
    pytest.param(
        M(ALICE, ALICE, "leave"),
        {"create_content": {"m.federate": False}},
        None,
        id="4-no-federation-creator-server-allowed",
    ),
)
def test_member_preconditions(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    check(v, build, state, expect)


# -- 5.3 join -------------------------------------------------------------------------------------


@versions
@rows(
    pytest.param(M(BOB, EVE, "join"), {"join_rule": "public"}, "5.3.2", id="5.3.2-join-for-other"),
    pytest.param(
        M(EVE, EVE, "join"), {"join_rule": "public", "members": {EVE: "ban"}}, "5.3.3", id="5.3.3"
    ),
    pytest.param(M(EVE, EVE, "join"), {"join_rule": "invite"}, "5.3.4", id="5.3.4-uninvited"),
    pytest.param(
        M(EVE, EVE, "join"),
        {"join_rule": "invite", "members": {EVE: "invite"}},
        None,
        id="5.3.4-invited",
    ),
    pytest.param(
        M(BOB, BOB, "join", displayname="Bob"), {"join_rule": "invite"}, None, id="5.3.4-joined"
    ),
    pytest.param(
        M(EVE, EVE, "join"),
        {"join_rule": "knock", "members": {EVE: "invite"}},
        None,
        id="5.3.4-knock-rule-invited",
    ),
    pytest.param(
        M(EVE, EVE, "join"),
        {"join_rule": "knock", "members": {EVE: "knock"}},
        "5.3.4",
        id="5.3.4-knock-rule-only-knocked",
    ),
    pytest.param(M(EVE, EVE, "join"), {"join_rule": "public"}, None, id="5.3.6-public"),
    pytest.param(
        M(EVE, EVE, "join"),
        {"join_rule": "public", "members": {EVE: "leave"}},
        None,
        id="5.3.6-rejoin",
    ),
    pytest.param(M(EVE, EVE, "join"), {"join_rule": "private"}, "5.3.7", id="5.3.7-private"),
    pytest.param(M(EVE, EVE, "join"), {"join_rule": "secret"}, "5.3.7", id="5.3.7-unknown-rule"),
    pytest.param(
        M(EVE, EVE, "join"),
        {"join_rule": None, "members": {EVE: "invite"}},
        "5.3.7",
        id="5.3.7-no-join-rules-event",
    ),
)
def test_join(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    check(v, build, state, expect)


def _authorised_join(authoriser: str, server: str) -> Build:
    return M(
        EVE,
        EVE,
        "join",
        join_authorised_via_users_server=authoriser,
        signatures={"e.org": {"ed25519:1": "c2ln"}, server: {"ed25519:1": "c2ln"}},
    )


@versions
@pytest.mark.parametrize("rule", ["restricted", "knock_restricted"])
@rows(
    pytest.param(_authorised_join(MOD, "b.org"), {}, None, id="5.3.5.3-authorised"),
    pytest.param(M(EVE, EVE, "join"), {}, "5.3.5.2", id="5.3.5.2-no-authoriser"),
    pytest.param(M(EVE, EVE, "join"), {"members": {EVE: "invite"}}, None, id="5.3.5.1-invited"),
    pytest.param(M(BOB, BOB, "join", displayname="b"), {}, None, id="5.3.5.1-already-joined"),
    pytest.param(
        _authorised_join(CAROL, "c.org"), {}, "5.3.5.2", id="5.3.5.2-authoriser-not-joined"
    ),
    pytest.param(
        _authorised_join(MOD, "b.org"),
        {"members": {MOD: "leave"}},
        "5.3.5.2",
        id="5.3.5.2-authoriser-left",
    ),
    pytest.param(
        _authorised_join(MOD, "b.org"),
        {"levels": {"invite": 60}},
        "5.3.5.2",
        id="5.3.5.2-authoriser-below-invite-level",
    ),
    pytest.param(
        _authorised_join(ALICE, "a.org"),
        {"levels": {"invite": 100}},
        None,
        id="5.3.5.2-creator-can-invite",
    ),
    pytest.param(
        M(EVE, EVE, "join", join_authorised_via_users_server=MOD),
        {},
        "5.2.1",
        id="5.2.1-authorising-server-did-not-sign",
    ),
    pytest.param(
        _authorised_join(MOD, "b.org"), {"members": {EVE: "ban"}}, "5.3.3", id="5.3.3-banned"
    ),
)
def test_restricted_join(v: RoomVersion, rule: str, build: Build, state: Any, expect: Any) -> None:
    check(v, build, {"join_rule": rule, **state}, expect)


def test_5_3_1_first_join_of_the_creator_differs_by_version() -> None:
    """v10 names the creator in content.creator; v11+ use the create event's sender."""
    for v, creator_content, joiner, expect in [
        (V10, {"creator": CAROL}, CAROL, None),
        (V10, {"creator": CAROL}, ALICE, "5.3.7"),  # the sender is not the v10 creator
        (V11, {"creator": CAROL}, ALICE, None),  # `creator` means nothing in v11
        (V11, {"creator": CAROL}, CAROL, "5.3.7"),
        (V12, {}, ALICE, None),
        (V12, {"additional_creators": [CAROL]}, CAROL, "5.3.7"),  # only the sender
    ]:
        create = create_event(v, **creator_content)
        state = {create.key: create}
        first_join = M(joiner, joiner, "join", prev=["$CREATE"])(v)
        assert_outcome(
            lambda s=state, e=first_join: check_state_dependent_auth_rules(e, s), v, expect
        )


@versions
@pytest.mark.parametrize(
    ("prev", "expect"),
    [
        pytest.param(["$CREATE"], None, id="5.3.1-only-prev-is-create"),
        pytest.param(["$CREATE", "$X"], "5.3.7", id="5.3.1-two-prev-events"),
        pytest.param(["$X"], "5.3.7", id="5.3.1-prev-is-not-create"),
    ],
)
def test_5_3_1_only_previous_event_is_the_create(
    v: RoomVersion, prev: list[str], expect: str | None
) -> None:
    create = create_event(v)
    e = M(ALICE, ALICE, "join", prev=prev)(v)
    assert_outcome(lambda: check_state_dependent_auth_rules(e, {create.key: create}), v, expect)


# -- 5.4 invite -----------------------------------------------------------------------------------


@versions
@rows(
    pytest.param(M(BOB, EVE, "invite"), {}, None, id="5.4.4-allow"),
    pytest.param(M(BOB, EVE, "invite"), {"members": {EVE: "invite"}}, None, id="5.4.4-reinvite"),
    pytest.param(M(BOB, EVE, "invite"), {"members": {EVE: "knock"}}, None, id="5.4.4-knocked"),
    pytest.param(M(CAROL, EVE, "invite"), {}, "5.4.2", id="5.4.2-sender-not-in-room"),
    pytest.param(
        M(CAROL, EVE, "invite"), {"members": {CAROL: "invite"}}, "5.4.2", id="5.4.2-sender-invited"
    ),
    pytest.param(M(BOB, MOD, "invite"), {}, "5.4.3", id="5.4.3-target-joined"),
    pytest.param(
        M(BOB, EVE, "invite"), {"members": {EVE: "ban"}}, "5.4.3", id="5.4.3-target-banned"
    ),
    pytest.param(
        M(BOB, EVE, "invite"), {"levels": {"invite": 50}}, "5.4.5", id="5.4.5-below-level"
    ),
    pytest.param(M(MOD, EVE, "invite"), {"levels": {"invite": 50}}, None, id="5.4.4-at-level"),
)
def test_invite(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    check(v, build, state, expect)


# The identity server's keys (fixed seeds, so the test is the same every run).
IS_KEY = decode_signing_key_base64("ed25519", "0", encode_base64(b"\x01" * 32))
IS_KEY2 = decode_signing_key_base64("ed25519", "1", encode_base64(b"\x02" * 32))
OTHER_KEY = decode_signing_key_base64("ed25519", "0", encode_base64(b"\x03" * 32))


def _public(key: Any, urlsafe: bool = False) -> str:
    return encode_base64(bytes(get_verify_key(key)), urlsafe=urlsafe)


def _signed(key: Any = IS_KEY, mxid: str = EVE, token: str = "tok", **extra: Any) -> dict[str, Any]:
    return sign_json({"mxid": mxid, "token": token, **extra}, "id.example.org", key)


def _third_party_invite_event(v: RoomVersion, **content: Any) -> Event:
    body = {"display_name": "e...@example.org", "key_validity_url": "https://id.example.org/v"}
    body.update(content)
    return event(
        v, THIRD_PARTY_INVITE, BOB, body, event_id="$TPI", state_key="tok", prev=["$M_bob"]
    )


def TPI(sender: str = BOB, invite: Any = None, target: str = EVE) -> Build:
    """A third-party invite's m.room.member event (``invite`` is content.third_party_invite)."""
    if invite is None:
        invite = {"display_name": "e...", "signed": _signed()}
    return M(sender, target, "invite", third_party_invite=invite)


def _tpi_state(**content: Any) -> dict[str, Any]:
    content = content or {"public_key": _public(IS_KEY)}
    return {"extra": [_third_party_invite_event(v, **content) for v in VERSIONS]}


@versions
@rows(
    pytest.param(TPI(), _tpi_state(), None, id="5.4.1.7.1-public-key"),
    pytest.param(
        TPI(invite={"signed": _signed(IS_KEY2)}),
        _tpi_state(public_key=_public(IS_KEY), public_keys=[{"public_key": _public(IS_KEY2)}]),
        None,
        id="5.4.1.7.2-public-keys",
    ),
    pytest.param(
        TPI(),
        _tpi_state(public_key=_public(IS_KEY), public_keys=[{"public_key": _public(IS_KEY2)}]),
        None,
        id="5.4.1.7.1-public-key-next-to-public-keys",
    ),
    pytest.param(
        TPI(), _tpi_state(public_key=_public(IS_KEY, urlsafe=True)), None, id="5.4.1.7-urlsafe-key"
    ),
    pytest.param(
        TPI(),
        {**_tpi_state(), "members": {BOB: "leave"}, "levels": {"invite": 100}},
        None,
        id="5.4.1.7-sender-needs-neither-join-nor-invite-level",
    ),
    pytest.param(TPI(), {**_tpi_state(), "members": {EVE: "ban"}}, "5.4.1.1", id="5.4.1.1-banned"),
    pytest.param(
        TPI(invite={"display_name": "e..."}), _tpi_state(), "5.4.1.2", id="5.4.1.2-no-signed"
    ),
    pytest.param(TPI(invite="junk"), _tpi_state(), "5.4.1.2", id="5.4.1.2-not-an-object"),
    pytest.param(
        TPI(invite={"signed": {"mxid": EVE, "signatures": {}}}),
        _tpi_state(),
        "5.4.1.3",
        id="5.4.1.3-no-token",
    ),
    pytest.param(
        TPI(invite={"signed": {"token": "tok", "signatures": {}}}),
        _tpi_state(),
        "5.4.1.3",
        id="5.4.1.3-no-mxid",
    ),
    pytest.param(
        TPI(invite={"signed": _signed(mxid=CAROL)}), _tpi_state(), "5.4.1.4", id="5.4.1.4-mxid"
    ),
    pytest.param(
        TPI(invite={"signed": _signed(token="other")}),
        _tpi_state(),
        "5.4.1.5",
        id="5.4.1.5-no-such-token",
    ),
    pytest.param(TPI(), {}, "5.4.1.5", id="5.4.1.5-no-third-party-invite-event"),
    pytest.param(TPI(sender=MOD), _tpi_state(), "5.4.1.6", id="5.4.1.6-other-sender"),
    pytest.param(
        TPI(invite={"signed": _signed(OTHER_KEY)}), _tpi_state(), "5.4.1.8", id="5.4.1.8-wrong-key"
    ),
    pytest.param(
        TPI(invite={"signed": {**_signed(), "extra": "tampered"}}),
        _tpi_state(),
        "5.4.1.8",
        id="5.4.1.8-tampered",
    ),
    pytest.param(
        TPI(invite={"signed": {"mxid": EVE, "token": "tok"}}),
        _tpi_state(),
        "5.4.1.8",
        id="5.4.1.8-no-signatures",
    ),
    pytest.param(
        TPI(), _tpi_state(public_key="not base64!"), "5.4.1.8", id="5.4.1.8-undecodable-key"
    ),
    pytest.param(
        TPI(), _tpi_state(public_key=encode_base64(b"short")), "5.4.1.8", id="5.4.1.8-short-key"
    ),
)
def test_third_party_invite(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    extra = [e for e in state.get("extra", []) if e.room_version is v]
    check(v, build, {**state, "extra": extra}, expect)


# -- 5.5 leave and kick ---------------------------------------------------------------------------


@versions
@rows(
    pytest.param(M(BOB, BOB, "leave"), {}, None, id="5.5.1-leave"),
    pytest.param(
        M(EVE, EVE, "leave"), {"members": {EVE: "invite"}}, None, id="5.5.1-reject-invite"
    ),
    pytest.param(M(EVE, EVE, "leave"), {"members": {EVE: "knock"}}, None, id="5.5.1-rescind-knock"),
    pytest.param(M(EVE, EVE, "leave"), {}, "5.5.1", id="5.5.1-never-in-room"),
    pytest.param(M(EVE, EVE, "leave"), {"members": {EVE: "leave"}}, "5.5.1", id="5.5.1-left"),
    pytest.param(M(EVE, EVE, "leave"), {"members": {EVE: "ban"}}, "5.5.1", id="5.5.1-self-unban"),
    pytest.param(
        M(CAROL, BOB, "leave"),
        {"members": {CAROL: "invite"}},
        "5.5.2",
        id="5.5.2-kicker-not-joined",
    ),
    pytest.param(M(MOD, EVE, "leave"), {"members": {EVE: "ban"}}, None, id="5.5.4-unban"),
    pytest.param(
        M(MOD, EVE, "leave"),
        {"members": {EVE: "ban"}, "levels": {"ban": 60}},
        "5.5.3",
        id="5.5.3-unban-below-ban-level",
    ),
    pytest.param(M(MOD, BOB, "leave"), {}, None, id="5.5.4-kick"),
    pytest.param(
        M(MOD, EVE, "leave"), {"members": {EVE: "invite"}}, None, id="5.5.4-revoke-invite"
    ),
    pytest.param(M(MOD, EVE, "leave"), {"members": {EVE: "knock"}}, None, id="5.5.4-deny-knock"),
    pytest.param(M(BOB, MOD, "leave"), {}, "5.5.5", id="5.5.5-below-kick-level"),
    pytest.param(M(MOD, MOD2, "leave"), {}, "5.5.5", id="5.5.5-target-not-below"),
    pytest.param(M(MOD, ALICE, "leave"), {}, "5.5.5", id="5.5.5-kick-creator"),
    pytest.param(M(ALICE, MOD, "leave"), {}, None, id="5.5.4-creator-kicks"),
    pytest.param(
        M(BOB, EVE, "leave"),
        {"levels": {"kick": 0, "users": {BOB: 1}}},
        None,
        id="5.5.4-kick-level-zero",
    ),
)
def test_leave(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    check(v, build, state, expect)


# -- 5.6 ban --------------------------------------------------------------------------------------


@versions
@rows(
    pytest.param(M(MOD, BOB, "ban"), {}, None, id="5.6.2-ban-member"),
    pytest.param(M(MOD, EVE, "ban"), {}, None, id="5.6.2-ban-outsider"),
    pytest.param(M(MOD, EVE, "ban"), {"members": {EVE: "ban"}}, None, id="5.6.2-ban-again"),
    pytest.param(M(CAROL, BOB, "ban"), {}, "5.6.1", id="5.6.1-sender-not-joined"),
    pytest.param(M(BOB, EVE, "ban"), {}, "5.6.3", id="5.6.3-below-ban-level"),
    pytest.param(M(MOD, MOD2, "ban"), {}, "5.6.3", id="5.6.3-target-not-below"),
    pytest.param(M(MOD, ALICE, "ban"), {}, "5.6.3", id="5.6.3-ban-creator"),
    pytest.param(M(MOD, MOD, "ban"), {}, "5.6.3", id="5.6.3-ban-self"),
)
def test_ban(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    check(v, build, state, expect)


# -- 5.7 knock ------------------------------------------------------------------------------------


@versions
@rows(
    pytest.param(M(EVE, EVE, "knock"), {"join_rule": "knock"}, None, id="5.7.3-knock"),
    pytest.param(
        M(EVE, EVE, "knock"), {"join_rule": "knock_restricted"}, None, id="5.7.3-knock-restricted"
    ),
    pytest.param(
        M(EVE, EVE, "knock"),
        {"join_rule": "knock", "members": {EVE: "knock"}},
        None,
        id="5.7.3-knock-again",
    ),
    pytest.param(M(EVE, EVE, "knock"), {"join_rule": "invite"}, "5.7.1", id="5.7.1-invite-rule"),
    pytest.param(M(EVE, EVE, "knock"), {"join_rule": "public"}, "5.7.1", id="5.7.1-public-rule"),
    pytest.param(M(EVE, EVE, "knock"), {"join_rule": "restricted"}, "5.7.1", id="5.7.1-restricted"),
    pytest.param(M(EVE, EVE, "knock"), {"join_rule": None}, "5.7.1", id="5.7.1-no-join-rules"),
    pytest.param(M(BOB, EVE, "knock"), {"join_rule": "knock"}, "5.7.2", id="5.7.2-for-other"),
    pytest.param(
        M(EVE, EVE, "knock"),
        {"join_rule": "knock", "members": {EVE: "ban"}},
        "5.7.4",
        id="5.7.4-banned",
    ),
    pytest.param(
        M(EVE, EVE, "knock"),
        {"join_rule": "knock", "members": {EVE: "invite"}},
        "5.7.4",
        id="5.7.4-invited",
    ),
    pytest.param(M(BOB, BOB, "knock"), {"join_rule": "knock"}, "5.7.4", id="5.7.4-joined"),
)
def test_knock(v: RoomVersion, build: Build, state: Any, expect: Any) -> None:
    check(v, build, state, expect)


# -- v12: creators (sender and additional_creators) have infinite power ---------------------------

V12_CREATORS = {"create_content": {"additional_creators": [CAROL]}, "members": {CAROL: "join"}}


@rows(
    pytest.param(M(CAROL, MOD, "ban"), V12_CREATORS, None, id="additional-creator-bans"),
    pytest.param(M(CAROL, ALICE, "leave"), V12_CREATORS, "5.5.5", id="creator-cannot-kick-creator"),
    pytest.param(M(ALICE, CAROL, "ban"), V12_CREATORS, "5.6.3", id="creator-cannot-ban-creator"),
    pytest.param(
        M(MOD, CAROL, "leave"),
        {**V12_CREATORS, "levels": {"kick": 0, "users": {MOD: 1_000_000}}},
        "5.5.5",
        id="no-level-is-above-a-creator",
    ),
    pytest.param(
        M(CAROL, EVE, "invite"),
        {**V12_CREATORS, "levels": {"invite": 1_000_000}},
        None,
        id="additional-creator-at-any-invite-level",
    ),
)
def test_v12_creators_in_membership_rules(build: Build, state: Any, expect: Any) -> None:
    check(V12, build, state, expect)


def test_v10_v11_creators_are_ordinary_with_power_levels() -> None:
    """Before v12 the creator's power comes from the power levels like anyone's."""
    state = {"levels": {"users": {MOD: 50, ALICE: 10}}}
    for v in (V10, V11):
        check(v, M(MOD, ALICE, "leave"), state, None)
