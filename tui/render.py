"""How one timeline event reads on screen: pure functions of the event's JSON.

Message types: spec client-server API 11.2.1.7 (m.text, m.notice, m.emote, m.image,
m.file ...); membership: 11.2.4 ``m.room.member``. Sensor readings are Croft's own
``io.croft.sensor.reading`` (node/sensors/__init__.py): ``{sensor_id, value, unit,
ts, seq}`` with ``value`` a decimal string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.text import Text

SENSOR_READING = "io.croft.sensor.reading"

NameOf = Callable[[str], str]

_MEMBERSHIP = {
    "join": "joined",
    "leave": "left",
    "invite": "was invited",
    "ban": "was banned",
    "knock": "knocked",
}


def render_event(event: Mapping[str, Any], name_of: NameOf) -> Text:
    """One line (or more, for a multi-line body) for ``event``."""
    etype = str(event.get("type", ""))
    content = event.get("content")
    if not isinstance(content, Mapping):
        content = {}
    sender = name_of(str(event.get("sender", "")))
    render = _BY_TYPE.get(etype)
    if render is not None:
        line = render(content, sender, event, name_of)
        if line is not None:
            return line
    return Text(f"{sender} · {etype or '(no type)'}", style="dim")


def _message(
    content: Mapping[str, Any], sender: str, event: Mapping[str, Any], name_of: NameOf
) -> Text | None:
    body = content.get("body")
    if not isinstance(body, str):
        return Text(f"{sender} · (deleted message)", style="dim italic")
    msgtype = content.get("msgtype")
    if msgtype == "m.emote":
        return Text.assemble(("* ", "magenta"), (sender, "bold magenta"), f" {body}")
    if msgtype == "m.notice":
        return Text.assemble((sender, "bold dim"), ": ", (body, "dim italic"))
    if msgtype == "m.text":
        return Text.assemble((sender, "bold"), ": ", body)
    kind = str(msgtype)[2:] if str(msgtype).startswith("m.") else str(msgtype)
    return Text.assemble((sender, "bold"), ": ", (f"[{kind}] ", "cyan"), body)


def _reading(
    content: Mapping[str, Any], sender: str, event: Mapping[str, Any], name_of: NameOf
) -> Text | None:
    sensor, value, unit = content.get("sensor_id"), content.get("value"), content.get("unit")
    if not isinstance(sensor, str) or not isinstance(value, str):
        return None
    unit_part = f" {unit}" if isinstance(unit, str) and unit else ""
    return Text.assemble("📟 ", (sensor, "bold green"), f" {value}{unit_part}")


def _member(
    content: Mapping[str, Any], sender: str, event: Mapping[str, Any], name_of: NameOf
) -> Text | None:
    membership = content.get("membership")
    target = str(event.get("state_key", ""))
    who = content.get("displayname")
    who = who if isinstance(who, str) and who else name_of(target)
    verb = _MEMBERSHIP.get(str(membership))
    if verb is None:
        return None
    return Text(f"{who} {verb}", style="dim")


def _name(
    content: Mapping[str, Any], sender: str, event: Mapping[str, Any], name_of: NameOf
) -> Text | None:
    name = content.get("name")
    if not isinstance(name, str):
        return None
    return Text(f"{sender} named the room {name!r}", style="dim")


def _topic(
    content: Mapping[str, Any], sender: str, event: Mapping[str, Any], name_of: NameOf
) -> Text | None:
    topic = content.get("topic")
    if not isinstance(topic, str):
        return None
    return Text(f"{sender} set the topic: {topic}", style="dim")


_BY_TYPE: dict[str, Callable[[Mapping[str, Any], str, Mapping[str, Any], NameOf], Text | None]] = {
    "m.room.message": _message,
    SENSOR_READING: _reading,
    "m.room.member": _member,
    "m.room.name": _name,
    "m.room.topic": _topic,
}
