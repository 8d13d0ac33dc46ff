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
    (msg({"msgtype": "m.file", "body": "a.pdf"}), "Ann: [file] a.pdf"),
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
    ({"type": "m.room.message", "sender": "@c:x", "content": "junk"}, "@c:x · (deleted message)"),
]


@pytest.mark.parametrize(("event", "text"), CASES)
def test_render(event: dict[str, Any], text: str) -> None:
    assert render_event(event, name_of).plain == text
