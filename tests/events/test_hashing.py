"""Unpadded Base64, content hashes, reference hashes and event IDs.

Vectors: VECTORS.md sections 1 (Base64), 5 (content hashes) and 7 (reference hashes and
event IDs computed by the spec helper). Spec: content/server-server-api.md "Signing Events".
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from node.events.canonical import encode_canonical_json
from node.events.hashing import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    decode_base64,
    encode_base64,
    room_id_from_create_event_id,
)
from node.events.pdu import Event
from node.events.room_versions import V10, V11, V12

# VECTORS.md section 5a input.
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
MINIMAL_HASH = "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"

# VECTORS.md section 5b input.
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
REDACTABLE_HASH = "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"

# -- Base64 (section 1) ----------------------------------------------------------------

BASE64_VECTORS = [
    (b"", ""),
    (b"f", "Zg"),
    (b"fo", "Zm8"),
    (b"foo", "Zm9v"),
    (b"foob", "Zm9vYg"),
    (b"fooba", "Zm9vYmE"),
    (b"foobar", "Zm9vYmFy"),
]


@pytest.mark.parametrize(("raw", "encoded"), BASE64_VECTORS)
def test_unpadded_base64_vectors(raw: bytes, encoded: str) -> None:
    assert encode_base64(raw) == encoded
    assert decode_base64(encoded) == raw


@pytest.mark.parametrize(
    ("padded", "raw"), [("Zg==", b"f"), ("Zm8=", b"fo"), ("Zm9v", b"foo"), ("Zm9vYg==", b"foob")]
)
def test_decode_accepts_padding(padded: str, raw: bytes) -> None:
    assert decode_base64(padded) == raw


def test_url_safe_alphabet() -> None:
    raw = bytes([0xFB, 0xFF, 0xBF])
    assert encode_base64(raw) == "+/+/"
    assert encode_base64(raw, urlsafe=True) == "-_-_"
    assert decode_base64("-_-_") == raw
    assert decode_base64("+/+/") == raw


def test_decode_accepts_non_zero_trailing_bits() -> None:
    # VECTORS.md section 7: the spec's seed ends in "A1" where canonical Base64 has "A0".
    assert decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1") == bytes.fromhex(
        "6090c103d5e7af6b15a970fd563ed75549e6159719ae5c3c31dee4316fb75c0d"
    )


@pytest.mark.parametrize("bad", ["Z", "Zm9vY", "Zg=", "Zg===", "Zm 9v", "Zm9v!", "Z=g", "Zm9v\n"])
def test_decode_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_base64(bad)


# -- content hash (section 5) ----------------------------------------------------------


def test_content_hash_minimal_event() -> None:
    assert encode_base64(compute_content_hash(MINIMAL_EVENT)) == MINIMAL_HASH


def test_content_hash_redactable_event() -> None:
    assert encode_base64(compute_content_hash(REDACTABLE_EVENT)) == REDACTABLE_HASH


def test_content_hash_is_sha256_of_the_canonical_json_without_three_keys() -> None:
    stripped = {
        k: v for k, v in MINIMAL_EVENT.items() if k not in ("unsigned", "signatures", "hashes")
    }
    assert (
        compute_content_hash(MINIMAL_EVENT)
        == hashlib.sha256(encode_canonical_json(stripped)).digest()
    )


def test_content_hash_ignores_unsigned_signatures_and_hashes() -> None:
    changed = dict(
        MINIMAL_EVENT,
        unsigned={"age": 5},
        signatures={"x": {"ed25519:1": "abc"}},
        hashes={"sha256": "zzz"},
    )
    assert encode_base64(compute_content_hash(changed)) == MINIMAL_HASH


def test_content_hash_covers_content_and_other_keys() -> None:
    assert encode_base64(compute_content_hash(dict(MINIMAL_EVENT, content={"a": 1}))) != (
        MINIMAL_HASH
    )
    assert encode_base64(compute_content_hash(dict(MINIMAL_EVENT, depth=4))) != MINIMAL_HASH


def test_add_content_hash_returns_a_new_dict() -> None:
    original = copy.deepcopy(MINIMAL_EVENT)
    hashed = add_content_hash(original)
    assert hashed["hashes"] == {"sha256": MINIMAL_HASH}
    assert original == MINIMAL_EVENT
    assert {k: v for k, v in hashed.items() if k != "hashes"} == {
        k: v for k, v in MINIMAL_EVENT.items() if k != "hashes"
    }


def test_add_content_hash_keeps_other_algorithms() -> None:
    hashed = add_content_hash(dict(MINIMAL_EVENT, hashes={"sha512": "x", "sha256": "old"}))
    assert hashed["hashes"] == {"sha512": "x", "sha256": MINIMAL_HASH}


def test_check_content_hash() -> None:
    hashed = add_content_hash(REDACTABLE_EVENT)
    assert hashed["hashes"]["sha256"] == REDACTABLE_HASH
    assert check_content_hash(hashed) is True
    # unsigned and signatures may change in transit.
    assert check_content_hash(dict(hashed, unsigned={"age": 1}, signatures={"a": {}})) is True
    # padding is accepted
    assert check_content_hash(dict(hashed, hashes={"sha256": REDACTABLE_HASH + "="})) is True


@pytest.mark.parametrize(
    "change",
    [
        {"content": {"body": "Here is the message content!"}},
        {"content": {}},  # what a redacted copy looks like
        {"origin_server_ts": 1000001},
        {"hashes": {}},
        {"hashes": {"sha256": "not base64!"}},
        {"hashes": {"sha256": 5}},
        {"hashes": "onLK"},
        {"hashes": {"sha256": MINIMAL_HASH}},
    ],
)
def test_check_content_hash_fails_on_tampering(change: dict[str, Any]) -> None:
    hashed = add_content_hash(REDACTABLE_EVENT)
    assert check_content_hash({**hashed, **change}) is False


def test_check_content_hash_without_hashes_key() -> None:
    assert check_content_hash(REDACTABLE_EVENT) is False


# -- reference hashes and event IDs (section 7) ----------------------------------------


@pytest.mark.parametrize(
    ("room_version", "reference_b64", "event_id"),
    [
        (
            V10,
            "8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc",
            "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc",
        ),
        (
            V11,
            "70O/oKlXzFbkfu0KE88USi98DjSWrOELrPj+8tisl8I",
            "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I",
        ),
        (
            V12,
            "70O/oKlXzFbkfu0KE88USi98DjSWrOELrPj+8tisl8I",
            "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I",
        ),
    ],
)
def test_reference_hash_and_event_id_of_minimal_event(
    room_version: Any, reference_b64: str, event_id: str
) -> None:
    hashed = add_content_hash(MINIMAL_EVENT)
    assert encode_base64(compute_reference_hash(hashed, room_version)) == reference_b64
    assert compute_event_id(hashed, room_version) == event_id


def test_reference_hash_is_sha256_of_the_redacted_form() -> None:
    # VECTORS.md section 7, the v11/v12 redacted form of the hashed minimal event.
    redacted = (
        '{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"' + MINIMAL_HASH + '"},'
        '"origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain",'
        '"sender":"@a:domain","type":"X"}'
    )
    hashed = add_content_hash(MINIMAL_EVENT)
    assert compute_reference_hash(hashed, V11) == hashlib.sha256(redacted.encode()).digest()


def test_event_id_ignores_signatures_and_unsigned() -> None:
    hashed = add_content_hash(MINIMAL_EVENT)
    other = dict(hashed, signatures={"domain": {"ed25519:1": "x"}}, unsigned={"age": 9})
    assert compute_event_id(other, V11) == compute_event_id(hashed, V11)


def test_event_id_covers_content_through_the_hash() -> None:
    hashed = add_content_hash(MINIMAL_EVENT)
    # Changing redactable content without re-hashing leaves the reference hash alone...
    assert compute_event_id(dict(hashed, content={"x": 1}), V11) == compute_event_id(hashed, V11)
    # ...but the content hash changes, and with it the event ID.
    rehashed = add_content_hash(dict(MINIMAL_EVENT, content={"x": 1}))
    assert compute_event_id(rehashed, V11) != compute_event_id(hashed, V11)


def test_v10_event_id_covers_origin_but_v11_does_not() -> None:
    hashed = add_content_hash(MINIMAL_EVENT)
    moved = dict(hashed, origin="elsewhere")
    assert compute_event_id(moved, V10) != compute_event_id(hashed, V10)
    assert compute_event_id(moved, V11) == compute_event_id(hashed, V11)


def test_event_from_pdu_uses_the_reference_hash() -> None:
    event = Event.from_pdu(add_content_hash(MINIMAL_EVENT), V12)
    assert event.event_id == "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I"


def test_room_id_from_create_event_id() -> None:
    assert (
        room_id_from_create_event_id("$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I")
        == "!70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I"
    )


def test_v12_create_event_room_id() -> None:
    create: dict[str, Any] = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@a:domain",
        "content": {"room_version": "12"},
        "origin_server_ts": 1,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
    }
    event = Event.from_pdu(add_content_hash(create), V12)
    assert event.room_id == room_id_from_create_event_id(event.event_id)
    assert event.room_id.startswith("!")
    assert len(event.room_id) == 44


@pytest.mark.parametrize("bad", ["", "$", "!abc", "$abc:domain", "abc"])
def test_room_id_from_create_event_id_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        room_id_from_create_event_id(bad)
