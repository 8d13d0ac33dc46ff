"""tui/render.py: how events read, from a table of event JSON."""

from __future__ import annotations

from typing import Any

import pytest

from tui.render import render_event

NAMES = {"@a:x": "Ann", "@b:x": "Bob"}


def name_of(user_id: str) -> str:
    return NAMES.get(user_id, user_id)


def msg(content: dict[str, Any], etype: str = "m.room.message", **kw: Any) -> dict[str, Any]:
    return {"type": etype, "sender": "@a:x", "content": content, **kw}


CASES = [
    (msg({"msgtype": "m.text", "body": "hi"}), "Ann: hi"),
    (msg({"msgtype": "m.notice", "body": "beep"}), "Ann: beep"),
    (msg({"msgtype": "m.emote", "body": "waves"}), "* Ann waves"),
    (msg({"msgtype": "m.file", "body": "a.pdf"}), "Ann: 📎 a.pdf (no file)"),
    (
        msg({"msgtype": "m.file", "body": "a.pdf", "url": "mxc://x/y", "info": {"size": 2048}}),
        "Ann: 📎 a.pdf (2.0 KB)",
    ),
    (
        msg(
            {
                "msgtype": "m.image",
                "body": "look",
                "filename": "cat.png",
                "file": {"url": "mxc://x/z"},
                "info": {"size": 3 * 1024 * 1024},
            }
        ),
        "Ann: 🖼 cat.png (3.0 MB)",
    ),
    (
        msg({"msgtype": "m.video", "body": "", "url": "mxc://x/v", "info": {"size": "big"}}),
        "Ann: 🎞 (unnamed)",
    ),
    (
        msg(
            {
                "msgtype": "m.text",
                "body": "**hi**",
                "format": "org.matrix.custom.html",
                "formatted_body": "<strong>hi</strong> <em>there</em>",
            }
        ),
        "Ann: hi there",
    ),
    (
        msg(
            {
                "msgtype": "m.text",
                "body": "> <@b:x> old\n\nnew",
                "m.relates_to": {"m.in_reply_to": {"event_id": "$old"}},
            }
        ),
        "Ann: new",
    ),
    (
        msg({"algorithm": "m.megolm.v1.aes-sha2"}, "m.room.encrypted"),
        "🔒 Ann: cannot decrypt this message",
    ),
    (msg({}), "Ann · (deleted message)"),
    (
        msg(
            {"sensor_id": "cpu-temp", "value": "42.1", "unit": "°C", "ts": 1, "seq": 2},
            "io.croft.sensor.reading",
        ),
        "📟 cpu-temp 42.1 °C",
    ),
    (msg({"sensor_id": "door", "value": "1", "unit": ""}, "io.croft.sensor.reading"), "📟 door 1"),
    # A malformed reading (value must be a decimal string) is shown as an unknown event.
    (
        msg({"sensor_id": "t", "value": 4.2}, "io.croft.sensor.reading"),
        "Ann · io.croft.sensor.reading",
    ),
    (msg({"membership": "join"}, "m.room.member", state_key="@b:x"), "Bob joined"),
    (
        msg({"membership": "join", "displayname": "B."}, "m.room.member", state_key="@b:x"),
        "B. joined",
    ),
    (msg({"name": "Garden"}, "m.room.name", state_key=""), "Ann named the room 'Garden'"),
    (msg({"x": 1}, "org.example.thing"), "Ann · org.example.thing"),
    (
        msg({"room_version": "12"}, "m.room.create", state_key=""),
        "Ann created the room (version 12)",
    ),
    (
        msg({"join_rule": "invite"}, "m.room.join_rules", state_key=""),
        "Ann made the room invite only",
    ),
    (msg({"join_rule": "??"}, "m.room.join_rules", state_key=""), "Ann · m.room.join_rules"),
    (
        msg({"history_visibility": "shared"}, "m.room.history_visibility", state_key=""),
        "Ann made the history visible to all members",
    ),
    (
        msg({"algorithm": "m.megolm.v1.aes-sha2"}, "m.room.encryption", state_key=""),
        "🔒 Ann turned on end-to-end encryption",
    ),
    (
        msg({"alias": "#a:x"}, "m.room.canonical_alias", state_key=""),
        "Ann set the room's address to #a:x",
    ),
    ({"type": "m.room.message", "sender": "@c:x", "content": "junk"}, "@c:x · (deleted message)"),
]


@pytest.mark.parametrize(("event", "text"), CASES)
def test_render(event: dict[str, Any], text: str) -> None:
    assert render_event(event, name_of).plain == text


def test_clock_shows_the_time_today_and_the_date_before() -> None:
    from datetime import datetime

    from tui.widgets.timeline import clock

    sent = datetime(2026, 3, 14, 9, 26).timestamp()
    event = {"origin_server_ts": int(sent * 1000)}
    assert clock(event, now=sent + 60) == "09:26"
    assert clock(event, now=sent + 3 * 86_400) == "14 Mar"
    for odd in (
        {},
        {"origin_server_ts": "soon"},
        {"origin_server_ts": True},
        {"origin_server_ts": 10**30},
    ):
        assert clock(odd) == ""
