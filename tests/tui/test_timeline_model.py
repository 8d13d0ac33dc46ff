"""tui/timeline_model.py: what edits, reactions, redactions, replies, receipts and local
echoes make of a room's events (pure logic, tables of event JSON)."""

from __future__ import annotations

from typing import Any

import pytest

from tui.render import render_entry
from tui.timeline_model import RoomTimeline

ME, ANN = "@me:x", "@ann:x"


def msg(eid: str, body: str, sender: str = ANN, ts: int = 0, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": eid,
        "sender": sender,
        "origin_server_ts": ts,
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def edit(eid: str, target: str, body: str, sender: str = ANN, ts: int = 1) -> dict[str, Any]:
    new = {"msgtype": "m.text", "body": body}
    rel = {"rel_type": "m.replace", "event_id": target}
    return msg(eid, f"* {body}", sender, ts, **{"m.new_content": new, "m.relates_to": rel})


def react(eid: str, target: str, key: str, sender: str = ANN) -> dict[str, Any]:
    rel = {"rel_type": "m.annotation", "event_id": target, "key": key}
    return {
        "type": "m.reaction",
        "event_id": eid,
        "sender": sender,
        "content": {"m.relates_to": rel},
    }


def redaction(eid: str, target: str, top_level: bool = False) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "m.room.redaction", "event_id": eid, "sender": ANN}
    if top_level:  # room versions before 11
        event |= {"redacts": target, "content": {}}
    else:
        event["content"] = {"redacts": target}
    return event


def shown(model: RoomTimeline) -> list[str]:
    return [render_entry(e, model, str).plain for e in model.entries]


EDIT_CASES = [
    # (events, what the first entry's body is, edited?)
    ([msg("$a", "hi"), edit("$e", "$a", "hello")], "hello", True),
    # The newest edit wins, whatever order they came in.
    (
        [msg("$a", "hi"), edit("$e2", "$a", "two", ts=2), edit("$e1", "$a", "one", ts=1)],
        "two",
        True,
    ),
    # Same timestamp: the larger event ID wins.
    ([msg("$a", "hi"), edit("$b", "$a", "bee"), edit("$c", "$a", "sea")], "sea", True),
    # Someone else's edit is ignored.
    ([msg("$a", "hi"), edit("$e", "$a", "hijacked", sender="@eve:x")], "hi", False),
    # An edit without m.new_content is ignored.
    (
        [
            msg("$a", "hi"),
            msg("$e", "* x", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$a"}}),
        ],
        "hi",
        False,
    ),
    # The edit came first (scrollback order): it applies when the original arrives.
    ([edit("$e", "$a", "later"), msg("$a", "hi")], "later", True),
    # A redacted edit no longer counts.
    ([msg("$a", "hi"), edit("$e", "$a", "oops"), redaction("$r", "$e")], "hi", False),
]


@pytest.mark.parametrize(("events", "body", "edited"), EDIT_CASES)
def test_edits(events: list[dict[str, Any]], body: str, edited: bool) -> None:
    model = RoomTimeline(ME)
    model.extend(events)
    assert [e.event_id for e in model.entries] == ["$a"]
    assert model.entries[0].content["body"] == body
    assert model.entries[0].edited is edited


def test_reactions_count_once_per_sender_and_key_and_redactions_take_them_back() -> None:
    model = RoomTimeline(ME)
    model.extend([msg("$a", "hi"), react("$r1", "$a", "👍"), react("$r2", "$a", "👍", ME)])
    model.extend([react("$r3", "$a", "👍"), react("$r4", "$a", "🎉", ME)])  # $r3: Ann again
    entry = model.entries[0]
    assert entry.reactions == {"👍": [ANN, ME], "🎉": [ME]}
    assert model.own_reaction("$a", "🎉") == "$r4"
    assert model.own_reaction("$a", "👀") is None
    model.extend([redaction("$x", "$r4", top_level=True)])
    assert entry.reactions == {"👍": [ANN, ME]}
    assert model.own_reaction("$a", "🎉") is None
    assert shown(model) == ["@ann:x: hi\n   👍 2 "]


def test_a_reaction_must_be_an_m_reaction_and_an_edit_must_not() -> None:
    model = RoomTimeline(ME)
    bogus = msg("$b", "not a reaction")
    bogus["content"]["m.relates_to"] = {"rel_type": "m.annotation", "event_id": "$a", "key": "x"}
    model.extend([msg("$a", "hi"), bogus])
    assert [e.event_id for e in model.entries] == ["$a", "$b"]  # shown as a message
    assert model.entries[0].reactions == {}


def test_redaction_hides_a_message_before_or_after_it_arrives() -> None:
    model = RoomTimeline(ME)
    model.extend([msg("$a", "secret"), redaction("$r", "$a")])
    model.prepend([redaction("$r0", "$old")])
    model.prepend([msg("$old", "older secret")])
    assert [e.redacted for e in model.entries] == [True, True]
    assert "secret" not in " ".join(shown(model))
    assert shown(model)[1] == "@ann:x · (message deleted)"
    # An event the server serves redacted.
    served = msg("$s", "")
    served["content"] = {}
    served["unsigned"] = {"redacted_because": {"type": "m.room.redaction"}}
    model.extend([served])
    assert model.entries[-1].redacted


def test_reply_quotes_the_event_it_answers() -> None:
    model = RoomTimeline(ME)
    answer = msg("$b", "> <@ann:x> first\n\nsecond", ME, **{"m.relates_to": {}})
    answer["content"]["m.relates_to"] = {"m.in_reply_to": {"event_id": "$a"}}
    model.extend([msg("$a", "first"), answer])
    assert shown(model)[1] == "↳ @ann:x: first\n@me:x: second"
    lonely = msg("$c", "about that", ME)
    lonely["content"]["m.relates_to"] = {"m.in_reply_to": {"event_id": "$gone"}}
    model.extend([lonely])
    assert shown(model)[2] == "↳ an earlier message\n@me:x: about that"


def test_receipts_move_and_own_are_not_shown() -> None:
    model = RoomTimeline(ME)
    model.extend([msg("$a", "one"), msg("$b", "two")])
    model.read_up_to(ANN, "$a")
    model.read_up_to(ME, "$b")
    assert [e.readers for e in model.entries] == [[ANN], []]
    model.read_up_to(ANN, "$b")
    assert [e.readers for e in model.entries] == [[], [ANN]]
    assert shown(model)[1] == "@ann:x: two\n  ✓ read by @ann:x"


def test_local_echo_becomes_the_event_and_stays_below_newer_ones() -> None:
    model = RoomTimeline(ME)
    model.extend([msg("$a", "one")])
    pending = model.echo("t1", {"type": "m.room.message", "sender": ME, "content": {"body": "x"}})
    model.echo("t2", {"type": "m.room.message", "sender": ME, "content": {"body": "y"}})
    model.extend([msg("$b", "from ann")])  # arrives while ours are on their way
    assert [e.state for e in model.entries] == ["sent", "sent", "pending", "pending"]
    sent = msg("$c", "x", ME)
    sent["unsigned"] = {"transaction_id": "t1"}
    model.extend([sent])
    assert pending.state == "sent" and pending.event_id == "$c"
    assert model.by_id["$c"] is pending
    model.failed("t2")
    assert model.entries[-1].state == "failed"
    assert model.newest_event_id() == "$c"
    assert model.last_own_message() is pending


def test_events_already_held_are_not_shown_twice_and_clear_keeps_echoes() -> None:
    model = RoomTimeline(ME)
    model.extend([msg("$a", "one"), msg("$b", "two")])
    model.prepend([msg("$0", "zero"), msg("$a", "one")])
    assert [e.event_id for e in model.entries] == ["$0", "$a", "$b"]
    model.echo("t", {"type": "m.room.message", "sender": ME, "content": {"body": "x"}})
    model.clear()
    assert [e.state for e in model.entries] == ["pending"]
    assert model.newest_event_id() is None and not model.by_id


def test_odd_events_do_not_break_the_model() -> None:
    model = RoomTimeline(ME)
    odd: list[Any] = [
        {"type": "m.room.message"},  # no ID, no content
        {"type": "m.reaction", "event_id": "$r", "content": {"m.relates_to": "junk"}},
        {"type": "m.room.redaction", "event_id": "$x", "content": {"redacts": 7}},
        {
            "type": "m.room.message",
            "event_id": "$e",
            "content": {"m.relates_to": {"rel_type": "m.replace", "event_id": 3}},
        },
    ]
    model.extend(odd)
    assert len(model.entries) == 4
    assert all(isinstance(text, str) for text in shown(model))


def test_an_event_decrypted_late_takes_its_place_or_applies_to_its_target() -> None:
    model = RoomTimeline(ME)
    locked = {"type": "m.room.encrypted", "sender": ANN, "content": {"algorithm": "x"}}
    model.extend([msg("$a", "hi"), {**locked, "event_id": "$m"}, {**locked, "event_id": "$r"}])
    message, reaction = model.entries[1], model.entries[2]
    model.replace_event(message, msg("$m", "now readable"))
    model.replace_event(reaction, react("$r", "$a", "👍"))
    assert [e.event_id for e in model.entries] == ["$a", "$m"]
    assert model.entries[1] is message and message.content["body"] == "now readable"
    assert model.entries[0].reactions == {"👍": [ANN]}
