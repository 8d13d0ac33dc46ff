"""The redaction algorithm, room versions 10 (v9 text) and 11/12 (v11 text).

Tables from VECTORS.md section 6c; redacted forms from section 7. Spec:
content/rooms/fragments/v9-redactions.md, v11-redactions.md; content/rooms/v11.md.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.events.canonical import encode_canonical_json
from node.events.hashing import add_content_hash
from node.events.redaction import redact, redact_for_client
from node.events.room_versions import V10, V11, V12, RoomVersion

SIGNED_3PID = {
    "mxid": "@bob:b.example",
    "token": "abc123",
    "signatures": {"id.example": {"ed25519:0": "c2ln"}},
}
POWER_LEVELS_V10_KEYS = {
    "ban": 50,
    "events": {"m.room.name": 50},
    "events_default": 0,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {"@a:a.example": 100},
    "users_default": 0,
}

# One content per event type of the 6c table, holding every key any version keeps plus
# keys no version keeps.
FULL_CONTENT: dict[str, dict[str, Any]] = {
    "m.room.member": {
        "membership": "invite",
        "join_authorised_via_users_server": "@a:a.example",
        "third_party_invite": {"display_name": "bob", "signed": SIGNED_3PID},
        "displayname": "Bob",
        "avatar_url": "mxc://a.example/x",
        "reason": "hi",
    },
    "m.room.create": {
        "creator": "@a:a.example",
        "room_version": "10",
        "m.federate": False,
        "additional_creators": ["@c:c.example"],
        "type": "m.space",
    },
    "m.room.join_rules": {
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership", "room_id": "!r:a.example"}],
        "extra": True,
    },
    "m.room.power_levels": {
        **POWER_LEVELS_V10_KEYS,
        "invite": 0,
        "notifications": {"room": 50},
        "historical": 100,
    },
    "m.room.history_visibility": {"history_visibility": "shared", "extra": 1},
    "m.room.aliases": {"aliases": ["#a:a.example"]},
    "m.room.redaction": {"redacts": "$target", "reason": "spam"},
    "m.room.message": {"body": "hello", "msgtype": "m.text"},
    "m.room.name": {"name": "Room"},
    "m.room.topic": {"topic": "Topic"},
    "m.room.third_party_invite": {"display_name": "b", "key_validity_url": "u", "public_key": "k"},
}

# Expected content after redaction: (room version 10, room versions 11 and 12).
EXPECTED_CONTENT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "m.room.member": (
        {"membership": "invite", "join_authorised_via_users_server": "@a:a.example"},
        {
            "membership": "invite",
            "join_authorised_via_users_server": "@a:a.example",
            "third_party_invite": {"signed": SIGNED_3PID},
        },
    ),
    "m.room.create": (
        {"creator": "@a:a.example"},
        FULL_CONTENT["m.room.create"],
    ),
    "m.room.join_rules": (
        {"join_rule": "restricted", "allow": FULL_CONTENT["m.room.join_rules"]["allow"]},
        {"join_rule": "restricted", "allow": FULL_CONTENT["m.room.join_rules"]["allow"]},
    ),
    "m.room.power_levels": (
        POWER_LEVELS_V10_KEYS,
        {**POWER_LEVELS_V10_KEYS, "invite": 0},
    ),
    "m.room.history_visibility": (
        {"history_visibility": "shared"},
        {"history_visibility": "shared"},
    ),
    "m.room.aliases": ({}, {}),
    "m.room.redaction": ({}, {"redacts": "$target"}),
    "m.room.message": ({}, {}),
    "m.room.name": ({}, {}),
    "m.room.topic": ({}, {}),
    "m.room.third_party_invite": ({}, {}),
}


def full_event(event_type: str) -> dict[str, Any]:
    """A PDU with every top-level key any redaction version keeps, plus some it drops."""
    return {
        "event_id": "$ev",
        "type": event_type,
        "room_id": "!r:a.example",
        "sender": "@a:a.example",
        "state_key": "",
        "content": copy.deepcopy(FULL_CONTENT[event_type]),
        "hashes": {"sha256": "aGFzaA"},
        "signatures": {"a.example": {"ed25519:1": "c2ln"}},
        "depth": 7,
        "prev_events": ["$p"],
        "prev_state": [],
        "auth_events": ["$a"],
        "origin": "a.example",
        "origin_server_ts": 1234,
        "membership": "join",
        "redacts": "$target",
        "unsigned": {"age": 5},
        "extra_top_level": "x",
    }


TOP_LEVEL_V10 = {
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "prev_state",
    "auth_events",
    "origin",
    "origin_server_ts",
    "membership",
}
TOP_LEVEL_V11 = TOP_LEVEL_V10 - {"origin", "membership", "prev_state"}


def test_table_covers_the_spec_types() -> None:
    spec_types = {
        "m.room.member",
        "m.room.create",
        "m.room.join_rules",
        "m.room.power_levels",
        "m.room.history_visibility",
        "m.room.aliases",
        "m.room.redaction",
    }
    assert spec_types <= EXPECTED_CONTENT.keys()


@pytest.mark.parametrize("event_type", sorted(EXPECTED_CONTENT))
def test_v10_content(event_type: str) -> None:
    assert redact(full_event(event_type), V10)["content"] == EXPECTED_CONTENT[event_type][0]


@pytest.mark.parametrize("room_version", [V11, V12], ids=["v11", "v12"])
@pytest.mark.parametrize("event_type", sorted(EXPECTED_CONTENT))
def test_v11_v12_content(event_type: str, room_version: RoomVersion) -> None:
    expected = EXPECTED_CONTENT[event_type][1]
    assert redact(full_event(event_type), room_version)["content"] == expected


@pytest.mark.parametrize("event_type", sorted(EXPECTED_CONTENT))
def test_top_level_keys(event_type: str) -> None:
    assert set(redact(full_event(event_type), V10)) == TOP_LEVEL_V10
    assert set(redact(full_event(event_type), V11)) == TOP_LEVEL_V11
    assert set(redact(full_event(event_type), V12)) == TOP_LEVEL_V11


def test_kept_top_level_values_are_unchanged() -> None:
    event = full_event("m.room.message")
    redacted = redact(event, V10)
    for key in TOP_LEVEL_V10 - {"content"}:
        assert redacted[key] == event[key]


def test_v11_member_third_party_invite_without_signed_is_dropped() -> None:
    event = full_event("m.room.member")
    event["content"]["third_party_invite"] = {"display_name": "bob"}
    assert "third_party_invite" not in redact(event, V11)["content"]
    event["content"]["third_party_invite"] = "not an object"
    assert "third_party_invite" not in redact(event, V11)["content"]


def test_v10_redaction_event_loses_top_level_redacts() -> None:
    event = full_event("m.room.redaction")
    assert "redacts" not in redact(event, V10)
    assert redact(event, V10)["content"] == {}


def test_missing_and_non_object_content() -> None:
    event = full_event("m.room.message")
    del event["content"]
    assert "content" not in redact(event, V11)
    event["content"] = ["not", "an", "object"]
    assert redact(event, V11)["content"] == {}
    assert redact(event, V10)["content"] == {}


def test_missing_keys_are_not_invented() -> None:
    assert redact({"type": "m.room.member", "content": {}}, V11) == {
        "type": "m.room.member",
        "content": {},
    }


def test_input_is_not_modified_and_result_is_independent() -> None:
    event = full_event("m.room.power_levels")
    snapshot = copy.deepcopy(event)
    redacted = redact(event, V11)
    assert event == snapshot
    redacted["content"]["users"]["@x:x"] = 1
    redacted["signatures"]["b"] = {}
    redacted["prev_events"].append("$q")
    assert event == snapshot


# -- VECTORS.md section 7: the redacted forms of the spec's events ---------------------

REDACTABLE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
REDACTED_V10 = (
    '{"content":{},"event_id":"$0:domain","hashes":{"sha256":'
    '"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin":"domain",'
    '"origin_server_ts":1000000,"room_id":"!r:domain","sender":"@u:domain",'
    '"type":"m.room.message"}'
)
MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
MINIMAL_REDACTED_V10 = (
    '{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":'
    '"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain",'
    '"origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain",'
    '"sender":"@a:domain","type":"X"}'
)


def _without_signatures(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "signatures"}


def test_section_7_redactable_event() -> None:
    hashed = add_content_hash(REDACTABLE_EVENT)
    v10 = encode_canonical_json(_without_signatures(redact(hashed, V10)))
    assert v10 == REDACTED_V10.encode()
    v11 = encode_canonical_json(_without_signatures(redact(hashed, V11)))
    assert v11 == REDACTED_V10.replace('"origin":"domain",', "").encode()


def test_section_7_minimal_event() -> None:
    hashed = add_content_hash(MINIMAL_EVENT)
    v10 = encode_canonical_json(_without_signatures(redact(hashed, V10)))
    assert v10 == MINIMAL_REDACTED_V10.encode()
    v12 = encode_canonical_json(_without_signatures(redact(hashed, V12)))
    assert v12 == MINIMAL_REDACTED_V10.replace('"origin":"domain",', "").encode()


# -- client format ---------------------------------------------------------------------

REDACTION_EVENT = {
    "type": "m.room.redaction",
    "event_id": "$red",
    "sender": "@a:a.example",
    "content": {"redacts": "$ev", "reason": "spam"},
    "origin_server_ts": 5,
}


def client_message() -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": "$ev",
        "room_id": "!r:a.example",
        "sender": "@a:a.example",
        "origin_server_ts": 1,
        "content": {"body": "oops", "msgtype": "m.text"},
        "unsigned": {"age": 10, "transaction_id": "t1", "prev_content": {"x": 1}, "other": 2},
    }


def test_redact_for_client() -> None:
    assert redact_for_client(client_message(), V11, REDACTION_EVENT) == {
        "type": "m.room.message",
        "event_id": "$ev",
        "room_id": "!r:a.example",
        "sender": "@a:a.example",
        "origin_server_ts": 1,
        "content": {},
        "unsigned": {"age": 10, "transaction_id": "t1", "redacted_because": REDACTION_EVENT},
    }


def test_plain_redact_drops_unsigned() -> None:
    assert "unsigned" not in redact(client_message(), V11)


def test_redact_for_client_without_unsigned() -> None:
    event = client_message()
    del event["unsigned"]
    assert redact_for_client(event, V10, REDACTION_EVENT)["unsigned"] == {
        "redacted_because": REDACTION_EVENT
    }


def test_redact_for_client_copies_redacts_to_top_level_in_v11() -> None:
    redaction = dict(REDACTION_EVENT, event_id="$red2", content={"redacts": "$ev2"})
    out = redact_for_client(redaction, V11, REDACTION_EVENT)
    assert out["content"] == {"redacts": "$ev2"}
    assert out["redacts"] == "$ev2"
    # v10: the algorithm removes the top-level `redacts` and keeps no content.
    v10_redaction = dict(redaction, redacts="$ev2", content={})
    out10 = redact_for_client(v10_redaction, V10, REDACTION_EVENT)
    assert "redacts" not in out10
    assert out10["content"] == {}


# -- properties ------------------------------------------------------------------------

_json_leaf = st.none() | st.booleans() | st.integers(-100, 100) | st.text(max_size=5)
_json = st.recursive(
    _json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)
_keys = st.sampled_from(
    sorted(TOP_LEVEL_V10 | {"unsigned", "redacts", "extra", "third_party_invite", "signed"})
)
_content_keys = st.sampled_from(
    sorted({k for c in FULL_CONTENT.values() for k in c} | {"signed", "third_party_invite"})
)
_events = st.builds(
    lambda top, content, event_type: {**top, "type": event_type, "content": content},
    st.dictionaries(_keys, _json, max_size=8),
    st.dictionaries(_content_keys, _json | st.fixed_dictionaries({"signed": _json}), max_size=8),
    st.sampled_from(sorted(FULL_CONTENT)) | st.text(max_size=5),
)


@pytest.mark.parametrize("room_version", [V10, V11, V12], ids=["v10", "v11", "v12"])
@given(event=_events)
def test_redaction_is_idempotent(room_version: RoomVersion, event: dict[str, Any]) -> None:
    once = redact(event, room_version)
    assert redact(once, room_version) == once


@given(event=_events)
def test_v11_keeps_a_subset_of_top_level_keys(event: dict[str, Any]) -> None:
    assert set(redact(event, V11)) <= TOP_LEVEL_V11
    assert set(redact(event, V10)) <= TOP_LEVEL_V10
