"""History visibility for servers (node/federation/server_visibility.py), as tables."""

from __future__ import annotations

from typing import Any

import pytest

from node.events.redaction import redact
from node.events.room_versions import room_version
from node.federation.server_visibility import (
    ServerStateAtEvent,
    pdu_for_server,
    relevant_state_ids,
    server_of,
    server_state,
    visible_to_server,
)
from node.rooms.visibility import ClientEvent


@pytest.mark.parametrize(
    ("visibility", "memberships", "visible"),
    [
        ("world_readable", [], True),
        ("world_readable", ["leave"], True),
        ("shared", [], True),
        ("shared", ["ban"], True),
        ("invited", [], False),
        ("invited", ["invite"], True),
        ("invited", ["join"], True),
        ("invited", ["leave"], False),
        ("invited", ["knock"], False),
        ("invited", ["leave", "invite"], True),
        ("joined", [], False),
        ("joined", ["invite"], False),
        ("joined", ["join"], True),
        ("joined", ["leave", "ban", "join"], True),
        ("joined", [None], False),
    ],
)
def test_visible_to_server(visibility: str, memberships: list[str | None], visible: bool) -> None:
    assert visible_to_server(visibility, memberships) is visible


@pytest.mark.parametrize(
    ("user_id", "server"),
    [
        ("@a:example.org", "example.org"),
        ("@a:example.org:8448", "example.org:8448"),
        ("@a:[::1]:8448", "[::1]:8448"),
        ("@nocolon", None),
        ("@a:", None),
    ],
)
def test_server_of(user_id: str, server: str | None) -> None:
    assert server_of(user_id) == server


def member(user: str, membership: Any) -> ClientEvent:
    return ClientEvent.of(
        {"type": "m.room.member", "state_key": user, "content": {"membership": membership}}
    )


def history(value: Any) -> ClientEvent:
    return ClientEvent.of(
        {
            "type": "m.room.history_visibility",
            "state_key": "",
            "content": {"history_visibility": value},
        }
    )


SERVER = "b.example:8448"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({}, ServerStateAtEvent("shared", ())),
        ({("m.room.history_visibility", ""): history("joined")}, ServerStateAtEvent("joined", ())),
        # Unknown or malformed values count as shared.
        ({("m.room.history_visibility", ""): history("secret")}, ServerStateAtEvent("shared", ())),
        ({("m.room.history_visibility", ""): history(["joined"])}, ServerStateAtEvent()),
        (
            {
                ("m.room.history_visibility", ""): history("invited"),
                ("m.room.member", "@x:b.example:8448"): member("@x:b.example:8448", "invite"),
                ("m.room.member", "@y:b.example:8448"): member("@y:b.example:8448", "leave"),
                # Other servers' users, and the same host on another port, do not count.
                ("m.room.member", "@z:b.example"): member("@z:b.example", "join"),
                ("m.room.member", "@w:c.example"): member("@w:c.example", "join"),
                ("m.room.member", "@v:b.example:8448"): member("@v:b.example:8448", 7),
            },
            ServerStateAtEvent("invited", ("invite", "leave", None)),
        ),
    ],
)
def test_server_state(
    state: dict[tuple[str, str], ClientEvent], expected: ServerStateAtEvent
) -> None:
    assert server_state(state, SERVER) == expected


def test_relevant_state_ids() -> None:
    ids = {
        ("m.room.create", ""): "$c",
        ("m.room.history_visibility", ""): "$h",
        ("m.room.member", "@x:b.example:8448"): "$x",
        ("m.room.member", "@z:b.example"): "$z",
        ("m.room.name", ""): "$n",
        ("m.room.history_visibility", "odd"): "$odd",
    }
    assert relevant_state_ids(ids, SERVER) == {
        ("m.room.history_visibility", ""): "$h",
        ("m.room.member", "@x:b.example:8448"): "$x",
    }


PDU = {
    "type": "m.room.message",
    "room_id": "!r:a.example",
    "sender": "@a:a.example",
    "content": {"msgtype": "m.text", "body": "secret"},
    "depth": 5,
    "prev_events": ["$p"],
    "auth_events": ["$a"],
    "origin_server_ts": 1,
    "hashes": {"sha256": "x"},
    "signatures": {"a.example": {"ed25519:k": "s"}},
    "unsigned": {"age_ts": 1},
}


@pytest.mark.parametrize(
    ("at", "full"),
    [
        (None, True),
        (ServerStateAtEvent("shared", ()), True),
        (ServerStateAtEvent("joined", ("join",)), True),
        (ServerStateAtEvent("joined", ("invite",)), False),
        (ServerStateAtEvent("invited", ()), False),
    ],
)
def test_pdu_for_server(at: ServerStateAtEvent | None, full: bool) -> None:
    version = room_version("11")
    served = pdu_for_server(PDU, version, at)
    if full:
        assert served is PDU
    else:
        assert served == redact(PDU, version)
        assert served["content"] == {}
        assert served["signatures"] == PDU["signatures"]
        assert "unsigned" not in served
