"""The pure rules of bundled aggregations, as tables from the spec text.

Spec: modules/event_replacements.md "Validity of replacement events" and
"Server-side aggregation of m.replace relationships"; threading.md; reference_relations.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from node.relations.aggregations import (
    ThreadSummary,
    bundled_relations,
    is_valid_replacement,
    most_recent_edit,
    relates_to,
    thread_aggregation,
)

ORIGINAL: dict[str, Any] = {
    "event_id": "$orig",
    "room_id": "!r:x",
    "sender": "@a:x",
    "type": "m.room.message",
    "content": {"msgtype": "m.text", "body": "hi"},
}
EDIT: dict[str, Any] = {
    "event_id": "$edit",
    "room_id": "!r:x",
    "sender": "@a:x",
    "type": "m.room.message",
    "content": {
        "body": "* hello",
        "m.new_content": {"body": "hello"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
    },
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


@pytest.mark.parametrize(
    ("original", "edit", "valid"),
    [
        (ORIGINAL, EDIT, True),
        (ORIGINAL, _with(EDIT, room_id="!other:x"), False),  # same room
        (ORIGINAL, _with(EDIT, sender="@b:x"), False),  # same sender
        (ORIGINAL, _with(EDIT, type="m.sticker"), False),  # same type
        (_with(ORIGINAL, state_key=""), _with(EDIT, state_key=""), False),  # no state
        (ORIGINAL, _with(EDIT, state_key=""), False),
        (  # the original must not itself be an edit
            _with(ORIGINAL, content=EDIT["content"]),
            EDIT,
            False,
        ),
        (  # m.new_content is required...
            ORIGINAL,
            _with(EDIT, content={"m.relates_to": EDIT["content"]["m.relates_to"]}),
            False,
        ),
        (  # ...except that an encrypted edit carries it in its ciphertext
            _with(ORIGINAL, type="m.room.encrypted"),
            _with(
                EDIT,
                type="m.room.encrypted",
                content={"m.relates_to": EDIT["content"]["m.relates_to"], "ciphertext": "…"},
            ),
            True,
        ),
        (  # a redacted original gets no replacement
            _with(ORIGINAL, unsigned={"redacted_because": {}}),
            EDIT,
            False,
        ),
    ],
)
def test_validity_of_replacement_events(
    original: dict[str, Any], edit: dict[str, Any], valid: bool
) -> None:
    assert is_valid_replacement(original, edit) is valid


def test_most_recent_edit_by_ts_then_event_id() -> None:
    edits = [
        {"event_id": "$b", "origin_server_ts": 5},
        {"event_id": "$c", "origin_server_ts": 4},
        {"event_id": "$a", "origin_server_ts": 5},
    ]
    assert most_recent_edit(edits) == edits[0]
    assert most_recent_edit([]) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"m.relates_to": {"rel_type": "m.thread", "event_id": "$r"}}, ("m.thread", "$r")),
        ({"m.relates_to": {"m.in_reply_to": {"event_id": "$r"}}}, None),  # replies: no rel_type
        ({"m.relates_to": {"rel_type": "m.thread"}}, None),
        ({"m.relates_to": "nonsense"}, None),
        ({}, None),
    ],
)
def test_relates_to(content: dict[str, Any], expected: tuple[str, str] | None) -> None:
    assert relates_to(content) == expected


def test_thread_participation_counts_the_root_sender() -> None:
    latest = {"event_id": "$l"}
    summary = ThreadSummary(count=2, latest_event_id="$l", user_replied=False)
    agg = thread_aggregation(summary, latest, root_sender="@me:x", user_id="@me:x")
    assert agg == {"latest_event": latest, "count": 2, "current_user_participated": True}
    agg = thread_aggregation(summary, latest, root_sender="@you:x", user_id="@me:x")
    assert agg["current_user_participated"] is False


def test_bundled_relations_leaves_out_what_is_empty() -> None:
    assert bundled_relations() == {}
    assert bundled_relations(references=["$1"]) == {"m.reference": {"chunk": [{"event_id": "$1"}]}}
