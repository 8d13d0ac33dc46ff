"""Signing keys, signed JSON and event signatures.

Vectors: VECTORS.md section 4 (key, JSON signing), 5 (event signing, pre-v11 redaction)
and 7 (public key, v11/v12 event signatures). Spec: content/appendices.md "Signing
Details", "Checking for a Signature", "Cryptographic Test Vectors";
content/server-server-api.md "Signing Events".
"""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import pytest

from node.events.canonical import InvalidJson
from node.events.hashing import add_content_hash, check_content_hash
from node.events.redaction import redact
from node.events.room_versions import V10, V11, V12, RoomVersion
from node.events.signing import (
    SignatureError,
    SigningKey,
    decode_signing_key_base64,
    decode_verify_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    format_signing_keys,
    generate_signing_key,
    get_verify_key,
    parse_signing_keys,
    read_signing_key_file,
    servers_that_must_sign,
    sign_event,
    sign_json,
    verify_event_signature,
    verify_json,
    verify_key_id,
    write_signing_key_file,
)

SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"  # as printed in the spec
CANONICAL_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0"
SEED_HEX = "6090c103d5e7af6b15a970fd563ed75549e6159719ae5c3c31dee4316fb75c0d"
PUBLIC_KEY = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
PUBLIC_KEY_HEX = "5c65f42514b601fddb7b7927cf67c18916c0a639b60e1eb58170c903c91c24d2"
# VECTORS.md sections 3, 4 and 5 (spec values).
SIG_4A = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
SIG_4B = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
SIG_ILLUSTRATIVE = (
    "s76RUgajp8w172am0zQb/iPTHsRnb4SkrzGoeCOSFfcBY2V/1c8QfrmdXHpvnc2jK5BD1WiJIxiMW95fMjK7Bw"
)
MINIMAL_SIG_V10 = (
    "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
)
REDACTABLE_SIG_V10 = (
    "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
)


@pytest.fixture
def key() -> SigningKey:
    return decode_signing_key_base64("ed25519", "1", SPEC_SEED)


# -- keys ------------------------------------------------------------------------------


def test_spec_seed_decodes_leniently(key: SigningKey) -> None:
    assert key.encode().hex() == SEED_HEX
    assert encode_signing_key_base64(key) == CANONICAL_SEED
    assert decode_signing_key_base64("ed25519", "1", CANONICAL_SEED).encode().hex() == SEED_HEX


def test_public_key(key: SigningKey) -> None:
    verify_key = get_verify_key(key)
    assert encode_verify_key_base64(verify_key) == PUBLIC_KEY
    assert verify_key.encode().hex() == PUBLIC_KEY_HEX
    assert verify_key_id(verify_key) == "ed25519:1"
    assert verify_key_id(key) == "ed25519:1"


def test_decode_verify_key() -> None:
    vk = decode_verify_key_base64("ed25519", "abc", PUBLIC_KEY)
    assert vk.encode().hex() == PUBLIC_KEY_HEX
    assert verify_key_id(vk) == "ed25519:abc"


def test_generate_signing_key() -> None:
    a = generate_signing_key("a_X1")
    b = generate_signing_key("a_X1")
    assert verify_key_id(a) == "ed25519:a_X1"
    assert a.encode() != b.encode()
    assert len(a.encode()) == 32


@pytest.mark.parametrize(
    ("alg", "version", "b64"),
    [
        ("curve25519", "1", CANONICAL_SEED),
        ("ed25519", "1", "Zm9v"),  # 3 bytes
        ("ed25519", "1", "not base64!"),
        ("ed25519", "", CANONICAL_SEED),
        ("ed25519", "a b", CANONICAL_SEED),
        ("ed25519", "a:b", CANONICAL_SEED),
    ],
)
def test_decode_signing_key_rejects(alg: str, version: str, b64: str) -> None:
    with pytest.raises(ValueError):
        decode_signing_key_base64(alg, version, b64)


@pytest.mark.parametrize(("alg", "b64"), [("curve25519", PUBLIC_KEY), ("ed25519", "Zm9v")])
def test_decode_verify_key_rejects(alg: str, b64: str) -> None:
    with pytest.raises(ValueError):
        decode_verify_key_base64(alg, "1", b64)


# -- JSON signing (section 4) ----------------------------------------------------------


def test_sign_empty_object(key: SigningKey) -> None:
    assert sign_json({}, "domain", key) == {"signatures": {"domain": {"ed25519:1": SIG_4A}}}


def test_sign_object_with_data(key: SigningKey) -> None:
    assert sign_json({"one": 1, "two": "Two"}, "domain", key) == {
        "one": 1,
        "signatures": {"domain": {"ed25519:1": SIG_4B}},
        "two": "Two",
    }


def test_sign_json_keeps_signatures_and_unsigned_and_does_not_mutate(key: SigningKey) -> None:
    obj = {
        "one": 1,
        "two": "Two",
        "unsigned": {"age_ts": 922834800000},
        "signatures": {"other.example": {"ed25519:x": "b3RoZXI"}, "domain": {"ed25519:0": "b2xk"}},
    }
    snapshot = copy.deepcopy(obj)
    signed = sign_json(obj, "domain", key)
    assert obj == snapshot
    assert signed["unsigned"] == {"age_ts": 922834800000}
    assert signed["signatures"] == {
        "other.example": {"ed25519:x": "b3RoZXI"},
        "domain": {
            "ed25519:0": "b2xk",
            # unsigned and signatures are not covered: same signature as vector 4b.
            "ed25519:1": SIG_4B,
        },
    }
    signed["signatures"]["domain"]["new"] = "x"
    assert obj == snapshot


def test_sign_json_rejects_non_canonical_values(key: SigningKey) -> None:
    with pytest.raises(InvalidJson):
        sign_json({"n": 1.5}, "domain", key)
    with pytest.raises(InvalidJson):
        sign_json({"n": 2**53}, "domain", key)


def test_sign_json_normalises_integral_floats(key: SigningKey) -> None:
    assert (
        sign_json({"one": 1.0, "two": "Two"}, "domain", key)["signatures"]
        == (sign_json({"one": 1, "two": "Two"}, "domain", key)["signatures"])
    )


def test_verify_round_trip(key: SigningKey) -> None:
    signed = sign_json({"one": 1, "two": "Two", "unsigned": {"a": 1}}, "domain", key)
    verify_json(signed, "domain", get_verify_key(key))
    # unsigned may change in transit; other servers may add signatures.
    signed["unsigned"] = {"age": 999}
    signed["signatures"]["else.example"] = {"ed25519:z": "AAAA"}
    verify_json(signed, "domain", get_verify_key(key))


def test_verify_spec_vectors(key: SigningKey) -> None:
    vk = get_verify_key(key)
    verify_json(
        {"signatures": {"domain": {"ed25519:1": SIG_4A}}},
        "domain",
        vk,
    )


def test_spec_illustrative_example_does_not_verify() -> None:
    # VECTORS.md section 3: the "Signing Details" example is not a real signature.
    example = {
        "name": "example.org",
        "signing_keys": {"ed25519:1": "XSl0kuyvrXNj6A+7/tkrB9sxSbRi08Of5uRhxOqZtEQ"},
        "unsigned": {"age_ts": 922834800000},
        "signatures": {"example.org": {"ed25519:1": SIG_ILLUSTRATIVE}},
    }
    vk = decode_verify_key_base64("ed25519", "1", "XSl0kuyvrXNj6A+7/tkrB9sxSbRi08Of5uRhxOqZtEQ")
    with pytest.raises(SignatureError, match="bad signature"):
        verify_json(example, "example.org", vk)


def _flip_one_char(sig: str) -> str:
    return ("B" if sig[0] == "A" else "A") + sig[1:]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda o: o.update(one=2), "bad signature"),
        (lambda o: o.update(three=3), "bad signature"),
        (lambda o: o.pop("two"), "bad signature"),
        (
            lambda o: o["signatures"]["domain"].update(
                {"ed25519:1": _flip_one_char(o["signatures"]["domain"]["ed25519:1"])}
            ),
            "bad signature",
        ),
        (lambda o: o["signatures"]["domain"].update({"ed25519:1": "!!"}), "not Base64"),
        (lambda o: o["signatures"]["domain"].update({"ed25519:1": "AAAA"}), "not 64 bytes"),
        (lambda o: o["signatures"]["domain"].update({"ed25519:1": 5}), "no signature"),
        (lambda o: o["signatures"].update(domain="nope"), "not signed by domain"),
        (lambda o: o["signatures"].pop("domain"), "not signed by domain"),
        (lambda o: o.update(signatures=["x"]), "no signatures"),
        (lambda o: o.pop("signatures"), "no signatures"),
        (
            lambda o: o["signatures"]["domain"].update(
                {"ed25519:2": o["signatures"]["domain"].pop("ed25519:1")}
            ),
            "no signature",
        ),
        (lambda o: o.update(one=0.5), "not canonical JSON"),
    ],
)
def test_verify_rejects_tampering(key: SigningKey, tamper: Any, message: str) -> None:
    signed = sign_json({"one": 1, "two": "Two"}, "domain", key)
    tamper(signed)
    with pytest.raises(SignatureError, match=message):
        verify_json(signed, "domain", get_verify_key(key))


def test_verify_rejects_wrong_key_and_wrong_server(key: SigningKey) -> None:
    signed = sign_json({"one": 1}, "domain", key)
    other = get_verify_key(decode_signing_key_base64("ed25519", "1", "A" * 43))
    with pytest.raises(SignatureError, match="bad signature"):
        verify_json(signed, "domain", other)
    with pytest.raises(SignatureError, match=r"not signed by other\.example"):
        verify_json(signed, "other.example", get_verify_key(key))


# -- event signing (sections 5 and 7) --------------------------------------------------

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
MINIMAL_SIGNED_V10 = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {"domain": {"ed25519:1": MINIMAL_SIG_V10}},
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}
MINIMAL_SIG_V11 = (
    "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw"
)

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
REDACTABLE_SIGNED_V10 = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {"domain": {"ed25519:1": REDACTABLE_SIG_V10}},
    "unsigned": {"age_ts": 1000000},
}
REDACTABLE_SIG_V11 = (
    "4WQB/6LN2OtkUN/+18xUNB/U4RTX1N3EeKBdlCxux08YO8izKDrSRqML1XB8V97IK7AujkNO1xMl7TaBLA4kDw"
)


def _hash_and_sign(event: dict[str, Any], key: SigningKey, rv: RoomVersion) -> dict[str, Any]:
    return sign_event(add_content_hash(event), "domain", key, rv)


def test_minimal_event_v10_matches_spec(key: SigningKey) -> None:
    assert _hash_and_sign(MINIMAL_EVENT, key, V10) == MINIMAL_SIGNED_V10


def test_redactable_event_v10_matches_spec(key: SigningKey) -> None:
    assert _hash_and_sign(REDACTABLE_EVENT, key, V10) == REDACTABLE_SIGNED_V10


@pytest.mark.parametrize("room_version", [V11, V12], ids=["v11", "v12"])
def test_minimal_event_v11_v12(key: SigningKey, room_version: RoomVersion) -> None:
    signed = _hash_and_sign(MINIMAL_EVENT, key, room_version)
    expected = dict(MINIMAL_SIGNED_V10, signatures={"domain": {"ed25519:1": MINIMAL_SIG_V11}})
    assert signed == expected


@pytest.mark.parametrize("room_version", [V11, V12], ids=["v11", "v12"])
def test_redactable_event_v11_v12(key: SigningKey, room_version: RoomVersion) -> None:
    signed = _hash_and_sign(REDACTABLE_EVENT, key, room_version)
    expected = dict(REDACTABLE_SIGNED_V10, signatures={"domain": {"ed25519:1": REDACTABLE_SIG_V11}})
    assert signed == expected


def test_sign_event_does_not_mutate_and_keeps_other_signatures(key: SigningKey) -> None:
    hashed = add_content_hash(
        dict(REDACTABLE_EVENT, signatures={"other.example": {"ed25519:o": "b3RoZXI"}})
    )
    snapshot = copy.deepcopy(hashed)
    signed = sign_event(hashed, "domain", key, V11)
    assert hashed == snapshot
    assert signed["signatures"] == {
        "other.example": {"ed25519:o": "b3RoZXI"},
        "domain": {"ed25519:1": REDACTABLE_SIG_V11},
    }


def test_sign_event_requires_the_content_hash(key: SigningKey) -> None:
    with pytest.raises(ValueError, match="content hash"):
        sign_event(REDACTABLE_EVENT, "domain", key, V11)


@pytest.mark.parametrize("room_version", [V10, V11, V12], ids=["v10", "v11", "v12"])
def test_verify_event_full_and_redacted(key: SigningKey, room_version: RoomVersion) -> None:
    signed = _hash_and_sign(REDACTABLE_EVENT, key, room_version)
    vk = get_verify_key(key)
    verify_event_signature(signed, "domain", vk, room_version)
    redacted = redact(signed, room_version)
    verify_event_signature(redacted, "domain", vk, room_version)
    # A redacted copy still verifies, but its content hash no longer matches.
    assert check_content_hash(signed) is True
    assert check_content_hash(redacted) is False


def test_v10_signature_does_not_verify_as_v11(key: SigningKey) -> None:
    signed = _hash_and_sign(MINIMAL_EVENT, key, V10)
    with pytest.raises(SignatureError):
        verify_event_signature(signed, "domain", get_verify_key(key), V11)


@pytest.mark.parametrize(
    "change",
    [
        {"origin_server_ts": 1000001},
        {"sender": "@v:domain"},
        {"room_id": "!s:domain"},
        {"type": "m.room.topic"},
        {"hashes": {"sha256": "AAAA"}},
        {"prev_events": ["$x"]},
    ],
)
def test_tampered_event_fails_signature(key: SigningKey, change: dict[str, Any]) -> None:
    signed = _hash_and_sign(REDACTABLE_EVENT, key, V11)
    with pytest.raises(SignatureError, match="bad signature"):
        verify_event_signature({**signed, **change}, "domain", get_verify_key(key), V11)


def test_tampered_content_fails_the_content_hash_not_the_signature(key: SigningKey) -> None:
    signed = _hash_and_sign(REDACTABLE_EVENT, key, V11)
    tampered = dict(signed, content={"body": "something else"})
    verify_event_signature(tampered, "domain", get_verify_key(key), V11)
    assert check_content_hash(tampered) is False


def test_tampered_protected_content_fails_the_signature(key: SigningKey) -> None:
    member = {
        "type": "m.room.member",
        "state_key": "@u:domain",
        "sender": "@u:domain",
        "room_id": "!r:domain",
        "content": {"membership": "join"},
        "origin_server_ts": 1,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
    }
    signed = _hash_and_sign(member, key, V11)
    tampered = dict(signed, content={"membership": "leave"})
    with pytest.raises(SignatureError):
        verify_event_signature(tampered, "domain", get_verify_key(key), V11)


# -- which servers must sign -----------------------------------------------------------


def _invite(signatures: dict[str, Any], *, third_party: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": "invite"}
    if third_party:
        content["third_party_invite"] = {
            "display_name": "bob",
            "signed": {"mxid": "@bob:b.example:8448", "token": "t", "signatures": {}},
        }
    return {
        "type": "m.room.member",
        "sender": "@alice:a.example",
        "state_key": "@bob:b.example:8448",
        "content": content,
        "signatures": signatures,
    }


def test_sender_server_must_sign() -> None:
    assert servers_that_must_sign({"sender": "@u:domain.example:8448", "type": "X"}) == {
        "domain.example:8448"
    }
    assert servers_that_must_sign(_invite({}, third_party=False)) == {"a.example"}


def test_third_party_invite_signed_by_the_invited_users_server() -> None:
    event = _invite({"b.example:8448": {"ed25519:1": "x"}})
    assert servers_that_must_sign(event) == {"b.example:8448"}


def test_third_party_invite_issued_by_the_senders_server() -> None:
    # After /exchange_third_party_invite the inviter's server builds and signs it.
    assert servers_that_must_sign(_invite({"a.example": {"ed25519:1": "x"}})) == {"a.example"}
    assert servers_that_must_sign(_invite({})) == {"a.example"}


def test_third_party_invite_with_bad_mxid_needs_the_sender() -> None:
    event = _invite({"evil.example": {}})
    event["content"]["third_party_invite"]["signed"]["mxid"] = "not a user id"
    assert servers_that_must_sign(event) == {"a.example"}


def test_restricted_join_needs_the_authorising_server_too() -> None:
    join: dict[str, Any] = {
        "type": "m.room.member",
        "sender": "@u:u.example",
        "state_key": "@u:u.example",
        "content": {"membership": "join", "join_authorised_via_users_server": "@r:r.example"},
    }
    assert servers_that_must_sign(join) == {"u.example", "r.example"}
    # Same server: one signature.
    join["content"]["join_authorised_via_users_server"] = "@r:u.example"
    assert servers_that_must_sign(join) == {"u.example"}
    # Not a user ID: the auth rules reject the event; nothing extra to verify here.
    join["content"]["join_authorised_via_users_server"] = "r.example"
    assert servers_that_must_sign(join) == {"u.example"}
    # Only membership events carry the key.
    other = dict(join, type="m.room.message")
    other["content"] = {"join_authorised_via_users_server": "@r:r.example"}
    assert servers_that_must_sign(other) == {"u.example"}


def test_restricted_join_requirement_survives_redaction() -> None:
    join = {
        "type": "m.room.member",
        "sender": "@u:u.example",
        "content": {"membership": "join", "join_authorised_via_users_server": "@r:r.example"},
    }
    for room_version in (V10, V11, V12):
        assert servers_that_must_sign(redact(join, room_version)) == {"u.example", "r.example"}


def test_signing_and_verifying_a_restricted_join(key: SigningKey) -> None:
    resident = decode_signing_key_base64("ed25519", "r", "B" * 43)
    join = add_content_hash(
        {
            "type": "m.room.member",
            "sender": "@u:domain",
            "state_key": "@u:domain",
            "room_id": "!r:domain",
            "content": {"membership": "join", "join_authorised_via_users_server": "@r:res.example"},
            "origin_server_ts": 1,
            "depth": 2,
            "prev_events": [],
            "auth_events": [],
        }
    )
    signed = sign_event(sign_event(join, "domain", key, V12), "res.example", resident, V12)
    keys = {"domain": get_verify_key(key), "res.example": get_verify_key(resident)}
    for server in servers_that_must_sign(signed):
        verify_event_signature(signed, server, keys[server], V12)
    assert set(signed["signatures"]) == {"domain", "res.example"}


@pytest.mark.parametrize("sender", [None, 5, "u:domain", "@u", "@u:bad_domain!"])
def test_servers_that_must_sign_rejects_bad_senders(sender: Any) -> None:
    event = {"type": "X"} if sender is None else {"type": "X", "sender": sender}
    with pytest.raises(SignatureError):
        servers_that_must_sign(event)


# -- key files -------------------------------------------------------------------------


def test_key_file_round_trip(tmp_path: Path, key: SigningKey) -> None:
    second = generate_signing_key("new")
    path = tmp_path / "signing.key"
    write_signing_key_file(path, [key, second])
    assert path.read_text() == f"ed25519 1 {CANONICAL_SEED}\ned25519 new " + (
        encode_signing_key_base64(second) + "\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = read_signing_key_file(path)
    assert [verify_key_id(k) for k in loaded] == ["ed25519:1", "ed25519:new"]
    assert [k.encode() for k in loaded] == [key.encode(), second.encode()]
    assert list(tmp_path.iterdir()) == [path]


def test_key_file_overwrite(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "signing.key"
    path.write_text("old contents\n")
    write_signing_key_file(path, [key])
    assert path.read_text() == f"ed25519 1 {CANONICAL_SEED}\n"


def test_parse_synapse_key_file_text() -> None:
    keys = parse_signing_keys(f"\ned25519 a_AbCd {SPEC_SEED}\n\n")
    assert len(keys) == 1
    assert verify_key_id(keys[0]) == "ed25519:a_AbCd"
    assert encode_verify_key_base64(get_verify_key(keys[0])) == PUBLIC_KEY
    assert format_signing_keys(keys) == f"ed25519 a_AbCd {CANONICAL_SEED}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ed25519 1\n", "line 1: expected"),
        (f"ed25519 1 {SPEC_SEED} extra\n", "line 1: expected"),
        (f"ed25519 1 {SPEC_SEED}\nrsa 2 {SPEC_SEED}\n", "line 2: unsupported"),
        ("ed25519 1 Zm9v\n", "line 1: an ed25519 seed is 32 bytes"),
    ],
)
def test_parse_key_file_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_signing_keys(text)
