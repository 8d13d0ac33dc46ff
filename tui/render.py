"""How one timeline event reads on screen: pure functions of the event's JSON.

Message types: spec client-server API 11.2.1.7 (m.text, m.notice, m.emote with
``formatted_body``; m.image, m.file, m.audio, m.video with ``url`` or, encrypted,
``file.url``, and ``info.size``); membership: 11.2.4 ``m.room.member``; encrypted
events (11.12.3 ``m.room.encrypted``) this device cannot decrypt. Sensor readings are
Croft's own ``io.croft.sensor.reading`` (node/sensors/__init__.py): ``{sensor_id,
value, unit, ts, seq}`` with ``value`` a decimal string.

``render_entry`` adds what relations make of an event (tui/timeline_model.py): the
message replied to, "(edited)", "deleted", reactions and who has read up to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.style import Style
from rich.text import Text

from tui.formatting import HTML_FORMAT, html_to_text, strip_reply_fallback
from tui.timeline_model import Entry, RoomTimeline, reply_to

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
    if msgtype in _FILES:
        return Text.assemble((sender, "bold"), ": ", _attachment(content, str(msgtype)))
    if reply_to(event) is not None:
        body = strip_reply_fallback(body)
    shown: Text | str = body
    formatted = content.get("formatted_body")
    if content.get("format") == HTML_FORMAT and isinstance(formatted, str):
        shown = html_to_text(formatted)
    if msgtype == "m.emote":
        return Text.assemble(("* ", "magenta"), (sender, "bold magenta"), " ", shown)
    if msgtype == "m.notice":
        return Text.assemble((sender, "bold dim"), ": ", _styled(shown, "dim italic"))
    if msgtype == "m.text":
        return Text.assemble((sender, "bold"), ": ", shown)
    kind = str(msgtype)[2:] if str(msgtype).startswith("m.") else str(msgtype)
    return Text.assemble((sender, "bold"), ": ", (f"[{kind}] ", "cyan"), shown)


def _styled(text: Text | str, style: str) -> Text:
    out = Text(text) if isinstance(text, str) else text.copy()
    out.stylize(style)
    return out


_FILES = {"m.image": "🖼", "m.file": "📎", "m.audio": "🔊", "m.video": "🎞"}


def file_url(content: Mapping[str, Any]) -> str | None:
    """The ``mxc://`` URI of an attachment (plain ``url``, or an encrypted ``file``)."""
    url = content.get("url")
    encrypted = content.get("file")
    if not isinstance(url, str) and isinstance(encrypted, Mapping):
        url = encrypted.get("url")
    return url if isinstance(url, str) and url.startswith("mxc://") else None


def file_name(content: Mapping[str, Any]) -> str:
    name = content.get("filename")
    if not isinstance(name, str) or not name:
        name = content.get("body")
    return name if isinstance(name, str) and name else "(unnamed)"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    for unit in ("KB", "MB", "GB"):
        size_f = size / 1024
        if size_f < 1024 or unit == "GB":
            return f"{size_f:.1f} {unit}"
        size = int(size_f)
    return f"{size} B"  # pragma: no cover


def _attachment(content: Mapping[str, Any], msgtype: str) -> Text:
    info = content.get("info")
    size = info.get("size") if isinstance(info, Mapping) else None
    url = file_url(content)
    text = Text(f"{_FILES[msgtype]} ")
    style = Style(underline=True, color="cyan", link=url) if url else Style(dim=True)
    text.append(file_name(content), style)
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        text.append(f" ({human_size(size)})", "dim")
    if url is None:
        text.append(" (no file)", "dim")
    return text


def _encrypted(
    content: Mapping[str, Any], sender: str, event: Mapping[str, Any], name_of: NameOf
) -> Text | None:
    return Text.assemble("🔒 ", (sender, "bold"), ": ", ("cannot decrypt this message", "dim"))


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


_JOIN_RULES = {
    "public": "made the room public: anyone can join",
    "invite": "made the room invite only",
    "knock": "let people ask to join",
    "restricted": "let members of other rooms join",
    "knock_restricted": "let members of other rooms join, and others ask",
}
_HISTORY = {
    "world_readable": "made the history readable by anyone",
    "shared": "made the history visible to all members",
    "invited": "made the history visible to members from their invite",
    "joined": "made the history visible to members from their join",
}


def _state_line(
    content: Mapping[str, Any], sender: str, event: Mapping[str, Any], name_of: NameOf
) -> Text | None:
    """The room's own state events, as one dim line each (client-server API 11.2.2)."""
    etype = event.get("type")
    line: str | None = None
    if etype == "m.room.name":
        name = content.get("name")
        line = f"{sender} named the room {name!r}" if isinstance(name, str) else None
    elif etype == "m.room.topic":
        topic = content.get("topic")
        line = f"{sender} set the topic: {topic}" if isinstance(topic, str) else None
    elif etype == "m.room.create":
        line = f"{sender} created the room"
        version = content.get("room_version")
        if isinstance(version, str):
            line += f" (version {version})"
    elif etype == "m.room.power_levels":
        line = f"{sender} changed who may do what (power levels)"
    elif etype == "m.room.join_rules":
        line = _JOIN_RULES.get(str(content.get("join_rule")))
        line = f"{sender} {line}" if line else None
    elif etype == "m.room.history_visibility":
        line = _HISTORY.get(str(content.get("history_visibility")))
        line = f"{sender} {line}" if line else None
    elif etype == "m.room.guest_access":
        allowed = content.get("guest_access") == "can_join"
        line = f"{sender} {'let guests join' if allowed else 'kept guests out'}"
    elif etype == "m.room.encryption":
        line = f"🔒 {sender} turned on end-to-end encryption"
    elif etype == "m.room.canonical_alias":
        alias = content.get("alias")
        line = (
            f"{sender} set the room's address to {alias}"
            if isinstance(alias, str)
            else f"{sender} removed the room's address"
        )
    elif etype == "m.room.avatar":
        line = f"{sender} changed the room's picture"
    elif etype == "m.room.pinned_events":
        line = f"{sender} changed the pinned messages"
    return Text(line, style="dim") if line else None


_BY_TYPE: dict[str, Callable[[Mapping[str, Any], str, Mapping[str, Any], NameOf], Text | None]] = {
    "m.room.message": _message,
    SENSOR_READING: _reading,
    "m.room.member": _member,
    "m.room.encrypted": _encrypted,
    **{
        etype: _state_line
        for etype in (
            "m.room.name",
            "m.room.topic",
            "m.room.create",
            "m.room.power_levels",
            "m.room.join_rules",
            "m.room.history_visibility",
            "m.room.guest_access",
            "m.room.encryption",
            "m.room.canonical_alias",
            "m.room.avatar",
            "m.room.pinned_events",
        )
    },
}


def summary(entry: Entry, name_of: NameOf, width: int = 60) -> str:
    """One short line for ``entry``: the quote above a reply, the bar above the composer."""
    if entry.redacted:
        return f"{name_of(entry.sender)}: (deleted)"
    text = render_event({**entry.event, "content": entry.content}, name_of).plain
    first = text.split("\n", 1)[0]
    return first if len(first) <= width else first[: width - 1] + "…"


def render_main(entry: Entry, name_of: NameOf) -> Text:
    """The event's own line(s): its newest content, "(edited)", deleted, not sent."""
    event = entry.event
    if entry.redacted:
        what = "message" if event.get("type") == "m.room.message" else str(event.get("type"))
        text = Text(f"{name_of(entry.sender)} · ({what} deleted)", style="dim italic")
    else:
        text = render_event({**event, "content": entry.content}, name_of)
    if entry.edited:
        text.append(" (edited)", "dim")
    if entry.state == "failed":
        text.append(" ✗ not sent", "red")
    elif entry.state == "pending":
        text.stylize("dim")
    return text


def render_entry(entry: Entry, model: RoomTimeline, name_of: NameOf) -> Text:
    """Everything shown for ``entry``: the quote it replies to, its line(s), reactions
    (one's own in bold) and the others who have read up to it."""
    out = Text()
    target = reply_to(entry.event)
    if target is not None and not entry.redacted:
        quoted = model.by_id.get(target)
        quote = summary(quoted, name_of) if quoted else "an earlier message"
        out.append(f"↳ {quote}\n", "dim")
    out.append_text(render_main(entry, name_of))
    if entry.reactions:
        out.append("\n  ")
        for i, (key, senders) in enumerate(entry.reactions.items()):
            mine = model.own_user in senders
            out.append("  " if i else "")
            out.append(f" {key} {len(senders)} ", "bold reverse" if mine else "reverse dim")
    if entry.readers:
        names = ", ".join(name_of(u) for u in entry.readers)
        out.append(f"\n  ✓ read by {names}", "dim green")
    return out
