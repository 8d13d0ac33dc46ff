"""Filters: parsing, validating and applying them (pure).

Spec: content/client-server-api/_index.md "Filtering" (and lazy-loading members);
api/client-server/definitions/sync_filter.yaml, event_filter.yaml,
room_event_filter.yaml. Type and sender patterns may end in ``*``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMELINE_LIMIT = 10
MAX_LIMIT = 1000


class InvalidFilter(ValueError):
    pass


def _str_list(obj: Mapping[str, Any], name: str, where: str) -> tuple[str, ...] | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidFilter(f"{where}.{name} must be a list of strings")
    return tuple(value)


def _bool(obj: Mapping[str, Any], name: str, where: str, default: bool) -> bool:
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise InvalidFilter(f"{where}.{name} must be a boolean")
    return value


def _object(obj: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = obj.get(name, {})
    if not isinstance(value, dict):
        raise InvalidFilter(f"{where}.{name} must be an object")
    return value


def _matches(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) if p.endswith("*") else value == p for p in patterns)


@dataclass(frozen=True)
class EventFilter:
    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    # Room event filter fields (ignored where they do not apply)
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    @classmethod
    def parse(cls, obj: Mapping[str, Any], where: str) -> EventFilter:
        if not isinstance(obj, Mapping):
            raise InvalidFilter(f"{where} must be an object")
        limit = obj.get("limit")
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0
        ):
            raise InvalidFilter(f"{where}.limit must be a non-negative integer")
        contains_url = obj.get("contains_url")
        if contains_url is not None and not isinstance(contains_url, bool):
            raise InvalidFilter(f"{where}.contains_url must be a boolean")
        return cls(
            limit=min(limit, MAX_LIMIT) if limit is not None else None,
            types=_str_list(obj, "types", where),
            not_types=_str_list(obj, "not_types", where) or (),
            senders=_str_list(obj, "senders", where),
            not_senders=_str_list(obj, "not_senders", where) or (),
            rooms=_str_list(obj, "rooms", where),
            not_rooms=_str_list(obj, "not_rooms", where) or (),
            contains_url=contains_url,
            lazy_load_members=_bool(obj, "lazy_load_members", where, False),
            include_redundant_members=_bool(obj, "include_redundant_members", where, False),
            unread_thread_notifications=_bool(obj, "unread_thread_notifications", where, False),
        )

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def allows(self, event: Mapping[str, Any]) -> bool:
        """Does an event (PDU, client event or EDU dict) pass this filter?"""
        etype = event.get("type", "")
        if _matches(etype, self.not_types):
            return False
        if self.types is not None and not _matches(etype, self.types):
            return False
        sender = event.get("sender")
        if isinstance(sender, str):
            if sender in self.not_senders:
                return False
            if self.senders is not None and sender not in self.senders:
                return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, dict) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        room_id = event.get("room_id")
        return not (isinstance(room_id, str) and not self.allows_room(room_id))


@dataclass(frozen=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    state: EventFilter = field(default_factory=EventFilter)
    timeline: EventFilter = field(default_factory=EventFilter)
    ephemeral: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    @property
    def timeline_limit(self) -> int:
        limit = self.timeline.limit
        return DEFAULT_TIMELINE_LIMIT if limit is None else limit


@dataclass(frozen=True)
class SyncFilter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    account_data: EventFilter = field(default_factory=EventFilter)
    presence: EventFilter = field(default_factory=EventFilter)
    room: RoomFilter = field(default_factory=RoomFilter)

    @classmethod
    def parse(cls, obj: Any) -> SyncFilter:
        if not isinstance(obj, Mapping):
            raise InvalidFilter("a filter must be a JSON object")
        fmt = obj.get("event_format", "client")
        if fmt not in ("client", "federation"):
            raise InvalidFilter("event_format must be 'client' or 'federation'")
        room = _object(obj, "room", "filter")
        rf = RoomFilter(
            rooms=_str_list(room, "rooms", "room"),
            not_rooms=_str_list(room, "not_rooms", "room") or (),
            include_leave=_bool(room, "include_leave", "room", False),
            state=EventFilter.parse(_object(room, "state", "room"), "room.state"),
            timeline=EventFilter.parse(_object(room, "timeline", "room"), "room.timeline"),
            ephemeral=EventFilter.parse(_object(room, "ephemeral", "room"), "room.ephemeral"),
            account_data=EventFilter.parse(
                _object(room, "account_data", "room"), "room.account_data"
            ),
        )
        return cls(
            event_fields=_str_list(obj, "event_fields", "filter"),
            event_format=fmt,
            account_data=EventFilter.parse(_object(obj, "account_data", "filter"), "account_data"),
            presence=EventFilter.parse(_object(obj, "presence", "filter"), "presence"),
            room=rf,
        )


def apply_event_fields(event: dict[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """Keep only the listed (dotted, ``\\.``-escaped) fields of a client event."""
    if fields is None:
        return event
    out: dict[str, Any] = {}
    for path in fields:
        parts = _split_dotted(path)
        src: Any = event
        for part in parts:
            if not isinstance(src, dict) or part not in src:
                break
            src = src[part]
        else:
            dst = out
            for part in parts[:-1]:
                dst = dst.setdefault(part, {})
            dst[parts[-1]] = src
    return out


def _split_dotted(path: str) -> list[str]:
    parts, buf, escape = [], "", False
    for ch in path:
        if escape:
            buf += ch
            escape = False
        elif ch == "\\":
            escape = True
        elif ch == ".":
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    return parts
