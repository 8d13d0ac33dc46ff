"""Identifier grammar: server names, user IDs, room IDs, event IDs, room aliases.

Spec: content/appendices.md "Identifier Grammar"; content/rooms/v12.md (room IDs).
"""

from __future__ import annotations

import dataclasses

import pytest

from node.ids import (
    EventID,
    InvalidId,
    RoomAlias,
    RoomID,
    ServerName,
    UserID,
    is_valid_new_localpart,
)

HASH = "70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I"  # 43 URL-safe Base64 characters

# -- server names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "host", "port"),
    [
        # the spec's examples
        ("matrix.org", "dns", "matrix.org", None),
        ("matrix.org:8888", "dns", "matrix.org", 8888),
        ("1.2.3.4", "ipv4", "1.2.3.4", None),
        ("1.2.3.4:1234", "ipv4", "1.2.3.4", 1234),
        ("[1234:5678::abcd]", "ipv6", "1234:5678::abcd", None),
        ("[1234:5678::abcd]:5678", "ipv6", "1234:5678::abcd", 5678),
        # others
        ("127.0.0.1:8448", "ipv4", "127.0.0.1", 8448),
        ("[::1]:8448", "ipv6", "::1", 8448),
        ("[::1]", "ipv6", "::1", None),
        ("[::ffff:1.2.3.4]", "ipv6", "::ffff:1.2.3.4", None),
        ("localhost", "dns", "localhost", None),
        ("MATRIX.org", "dns", "MATRIX.org", None),
        ("a-b.example.com:1", "dns", "a-b.example.com", 1),
        ("255.255.255.255", "ipv4", "255.255.255.255", None),
        ("x.y:99999", "dns", "x.y", 99999),  # 1*5DIGIT
        ("1.2.3.4.example", "dns", "1.2.3.4.example", None),
    ],
)
def test_valid_server_names(name: str, kind: str, host: str, port: int | None) -> None:
    server = ServerName.parse(name)
    assert server.kind == kind
    assert server.host == host
    assert server.port == port
    assert server.is_ip_literal == (kind != "dns")
    assert str(server) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ":8448",
        "matrix.org:",
        "matrix.org:123456",
        "matrix.org:80a",
        "matrix.org:-1",
        "matrix.org:8448:1",
        "matrix_org",
        "matrix.org/path",
        "user@matrix.org",
        "mätrix.org",
        "matrix.org ",
        "matrix.org\n",
        "256.1.1.1",
        "1.2.3",
        "1234",
        "1.2.3.4.5",
        "::1",
        "[::1",
        "[::1]8448",
        "[::g]",
        "[1.2.3.4]",
        "[fe80::1%eth0]",
        "[]",
        "x" * 256,
        "matrix.org:８４４８",  # non-ASCII digits
    ],
)
def test_invalid_server_names(name: str) -> None:
    with pytest.raises(InvalidId):
        ServerName.parse(name)


def test_server_names_are_case_sensitive() -> None:
    assert ServerName.parse("matrix.org") != ServerName.parse("MATRIX.ORG")


# -- user IDs --------------------------------------------------------------------------


def test_parse_user_id() -> None:
    user = UserID.parse("@alice:example.org:8448")
    assert user.localpart == "alice"
    assert user.domain == "example.org:8448"
    assert user.server_name == ServerName("example.org:8448")
    assert user.server_name.port == 8448
    assert str(user) == "@alice:example.org:8448"
    assert user.is_compliant


@pytest.mark.parametrize(
    "user_id",
    [
        "@Alice:example.org",  # upper case
        "@al ice:example.org",  # space
        "@ålice:example.org",
        "@\x01:example.org",  # control characters are allowed historically
        "@:example.org",  # so is the empty localpart
        "@a*b:[::1]",
    ],
)
def test_historical_user_ids_parse(user_id: str) -> None:
    assert str(UserID.parse(user_id)) == user_id


@pytest.mark.parametrize(
    ("user_id", "compliant"),
    [
        ("@alice:x.y", True),
        ("@Alice!~:x.y", True),  # printable ASCII is compliant, if not strictly valid
        ("@:x.y", False),
        ("@al ice:x.y", False),
        ("@ålice:x.y", False),
        ("@a\x7f:x.y", False),
    ],
)
def test_user_id_compliance(user_id: str, compliant: bool) -> None:
    assert UserID.parse(user_id).is_compliant is compliant


@pytest.mark.parametrize(
    "user_id",
    [
        "alice:example.org",
        "#alice:example.org",
        "@alice",
        "@alice:",
        "@a\x00b:example.org",
        "@a\ud800:example.org",
        "@alice:bad_server",
        "@alice:example.org:",
        "@" + "a" * 243 + ":example.org",  # 256 bytes
        "@" + "é" * 122 + ":example.org",  # 256 bytes, 134 characters
    ],
)
def test_invalid_user_ids(user_id: str) -> None:
    with pytest.raises(InvalidId):
        UserID.parse(user_id)


def test_user_id_length_limit_is_255_bytes() -> None:
    longest = "@" + "a" * 242 + ":example.org"
    assert len(longest.encode()) == 255
    assert str(UserID.parse(longest)) == longest


@pytest.mark.parametrize(
    ("localpart", "valid"),
    [
        ("alice", True),
        ("a.b_c=d-e/f+g", True),
        ("0123456789", True),
        ("", False),
        ("Alice", False),
        ("al ice", False),
        ("a:b", False),
        ("a*b", False),
        ("a#b", False),
        ("ålice", False),
        ("alice\n", False),
    ],
)
def test_is_valid_new_localpart(localpart: str, valid: bool) -> None:
    assert is_valid_new_localpart(localpart) is valid
    assert UserID.is_valid_new_localpart(localpart) is valid


def test_new_user_id() -> None:
    assert str(UserID.new("alice", "example.org")) == "@alice:example.org"
    with pytest.raises(InvalidId, match="may only contain"):
        UserID.new("Alice", "example.org")
    with pytest.raises(InvalidId, match="255"):
        UserID.new("a" * 250, "example.org")
    with pytest.raises(InvalidId):
        UserID.new("alice", "not a server")


def test_ids_are_frozen_and_hashable() -> None:
    user = UserID.parse("@a:b.c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        user.localpart = "x"  # type: ignore[misc]
    assert {user, UserID("a", "b.c")} == {user}


def test_constructor_validates_too() -> None:
    with pytest.raises(InvalidId):
        UserID("a:b", "c.d")
    with pytest.raises(InvalidId):
        RoomID("short")


# -- room IDs --------------------------------------------------------------------------


def test_room_id_with_domain() -> None:
    room = RoomID.parse("!abcDEF123:example.org")
    assert (room.opaque, room.domain, room.is_hash) == ("abcDEF123", "example.org", False)
    assert str(room) == "!abcDEF123:example.org"


def test_room_id_v12() -> None:
    room = RoomID.parse("!" + HASH)
    assert (room.opaque, room.domain, room.is_hash) == (HASH, None, True)
    assert str(room) == "!" + HASH


@pytest.mark.parametrize(
    "room_id",
    [
        "!opaque with spaces and ünïcode:example.org",
        "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ",  # the spec's v12 example
    ],
)
def test_valid_room_ids(room_id: str) -> None:
    assert str(RoomID.parse(room_id)) == room_id


@pytest.mark.parametrize(
    "room_id",
    [
        "",
        "abc:example.org",
        "$abc:example.org",
        "!:example.org",
        "!abc:",
        "!abc:bad server",
        "!a\x00b:example.org",
        "!abc",
        "!" + HASH[:-1],
        "!" + HASH + "A",
        "!" + HASH[:-1] + "+",
        "!" + HASH[:-1] + "=",
        "!" + "a" * 243 + ":example.org",
    ],
)
def test_invalid_room_ids(room_id: str) -> None:
    with pytest.raises(InvalidId):
        RoomID.parse(room_id)


# -- event IDs -------------------------------------------------------------------------


def test_event_id_hash_form() -> None:
    event = EventID.parse("$" + HASH)
    assert (event.opaque, event.domain, event.is_hash) == (HASH, None, True)
    assert str(event) == "$" + HASH


def test_event_id_legacy_form() -> None:
    event = EventID.parse("$0:domain")
    assert (event.opaque, event.domain, event.is_hash) == ("0", "domain", False)
    assert str(event) == "$0:domain"


@pytest.mark.parametrize(
    "event_id",
    [
        "",
        "$",
        HASH,
        "!" + HASH,
        "$" + HASH[:-1],
        "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk",  # room v3 (standard Base64)
        "$:domain",
        "$abc:",
        "$a\x00:domain",
    ],
)
def test_invalid_event_ids(event_id: str) -> None:
    with pytest.raises(InvalidId):
        EventID.parse(event_id)


# -- room aliases ----------------------------------------------------------------------


def test_room_alias() -> None:
    alias = RoomAlias.parse("#Room Name ✨:example.org:8448")
    assert alias.localpart == "Room Name ✨"
    assert alias.domain == "example.org:8448"
    assert alias.server_name.port == 8448
    assert str(alias) == "#Room Name ✨:example.org:8448"


@pytest.mark.parametrize(
    "alias",
    [
        "room:example.org",
        "#room",
        "#:example.org",
        "#room:",
        "#ro\x00om:example.org",
        "#room:bad_server",
        "#" + "r" * 243 + ":example.org",
    ],
)
def test_invalid_room_aliases(alias: str) -> None:
    with pytest.raises(InvalidId):
        RoomAlias.parse(alias)


def test_invalid_id_is_a_value_error() -> None:
    assert issubclass(InvalidId, ValueError)
