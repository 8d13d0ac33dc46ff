"""Building this server's events (node/rooms/builder.py): the one-encoding-per-form
builder gives exactly what the spec's algorithms, applied one by one, give."""

from __future__ import annotations

from typing import Any

import pytest

from node.events.canonical import InvalidJson, encode_canonical_json
from node.events.hashing import add_content_hash, check_content_hash
from node.events.pdu import CREATE, MEMBER, Event
from node.events.room_versions import RoomVersion, room_version
from node.events.signing import (
    generate_signing_key,
    get_verify_key,
    sign_event,
    verify_event_signature,
)
from node.federation.keys import ServerKey
from node.rooms.builder import MAX_PDU_BYTES, EventTooLarge, build_event

SERVER = "example.org"
KEY = ServerKey(SERVER, generate_signing_key("a1"))
ALICE = "@alice:example.org"


def reference_build(version: RoomVersion, **fields: Any) -> Event:
    """The same event through the general functions: hash, sign, event ID."""
    event, _ = build_event(room_version=version, server_key=KEY, **fields)
    pdu = {k: v for k, v in event.raw.items() if k not in ("hashes", "signatures")}
    pdu = add_content_hash(pdu)
    pdu = sign_event(pdu, SERVER, KEY.signing_key, version)
    return Event.from_pdu(pdu, version)


def member_state(version: RoomVersion) -> dict[tuple[str, str], Event]:
    create, _ = build_event(
        room_version=version,
        server_key=KEY,
        room_id=None if version.room_id_is_create_event_id else "!r:example.org",
        sender=ALICE,
        event_type=CREATE,
        content={"room_version": version.identifier}
        | ({} if version.implicit_room_creator else {"creator": ALICE}),
        state_key="",
        prev_events=[],
        state={},
        origin_server_ts=1,
    )
    return {(CREATE, ""): create}


CASES: list[tuple[str, dict[str, Any]]] = [
    ("message", {"event_type": "m.room.message", "content": {"msgtype": "m.text", "body": "hé ☃"}}),
    ("state", {"event_type": MEMBER, "content": {"membership": "join"}, "state_key": ALICE}),
    ("float that is an integer", {"event_type": "m.x", "content": {"n": 3.0, "z": -0.0}}),
    (
        "redaction, redacts on top",
        {"event_type": "m.room.redaction", "content": {}, "extra": {"redacts": "$e"}},
    ),
]


@pytest.mark.parametrize("identifier", ["10", "11", "12"])
@pytest.mark.parametrize(("name", "fields"), CASES, ids=[c[0] for c in CASES])
def test_same_event_as_the_spec_algorithms_one_by_one(
    identifier: str, name: str, fields: dict[str, Any]
) -> None:
    version = room_version(identifier)
    state = member_state(version)
    create = state[(CREATE, "")]
    room_id = create.room_id
    common = {
        "room_id": room_id,
        "sender": ALICE,
        "state_key": None,
        "prev_events": [(create.event_id, 1)],
        "state": state,
        "origin_server_ts": 1_700_000_000_000,
    } | fields
    event, encoded = build_event(room_version=version, server_key=KEY, **common)
    expected = reference_build(version, **common)
    assert event.event_id == expected.event_id
    assert dict(event.raw) == dict(expected.raw)
    assert encoded == encode_canonical_json(event.raw)
    assert check_content_hash(event.raw)
    verify_event_signature(event.raw, SERVER, get_verify_key(KEY.signing_key), version)
    assert event.raw["depth"] == 2


def test_the_v12_create_event_id_is_its_reference_hash() -> None:
    version = room_version("12")
    create = member_state(version)[(CREATE, "")]
    assert "room_id" not in create.raw
    assert create.event_id == Event.from_pdu(create.raw, version).event_id


def test_content_that_is_not_canonical_json_is_refused() -> None:
    version = room_version("12")
    state = member_state(version)
    create = state[(CREATE, "")]
    for content in ({"n": 1.5}, {"n": 2**60}, {"s": "\ud800"}):
        with pytest.raises(InvalidJson):
            build_event(
                room_version=version,
                server_key=KEY,
                room_id=create.room_id,
                sender=ALICE,
                event_type="m.x",
                content=content,
                state_key=None,
                prev_events=[(create.event_id, 1)],
                state=state,
                origin_server_ts=1,
            )


def test_an_event_over_the_size_limit_is_refused() -> None:
    version = room_version("12")
    state = member_state(version)
    create = state[(CREATE, "")]
    with pytest.raises(EventTooLarge):
        build_event(
            room_version=version,
            server_key=KEY,
            room_id=create.room_id,
            sender=ALICE,
            event_type="m.room.message",
            content={"body": "x" * MAX_PDU_BYTES},
            state_key=None,
            prev_events=[(create.event_id, 1)],
            state=state,
            origin_server_ts=1,
        )
