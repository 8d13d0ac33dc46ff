"""Build fake events for tables of events: readable IDs, no hashing or signing.

The room algorithms only read the fields of an Event, so tests give events short
names (``$CREATE``, ``$PA``) instead of reference hashes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from node.events.pdu import CREATE, Event
from node.events.room_versions import V12, RoomVersion

ROOM_ID = "!room:example.org"


def make_event(
    event_id: str,
    type: str,
    sender: str,
    content: Mapping[str, Any] | None = None,
    *,
    state_key: str | None = None,
    prev: Sequence[str] = (),
    auth: Sequence[str] = (),
    depth: int = 1,
    ts: int = 0,
    room_version: RoomVersion = V12,
    room_id: str | None = ROOM_ID,
    rejected_reason: str | None = None,
    **extra: Any,
) -> Event:
    """An Event with a chosen ID. For a v12 create event, pass ``room_id=None``."""
    raw: dict[str, Any] = {
        "type": type,
        "sender": sender,
        "content": dict(content or {}),
        "prev_events": list(prev),
        "auth_events": list(auth),
        "depth": depth,
        "origin_server_ts": ts,
        "hashes": {"sha256": "x"},
        "signatures": {},
    }
    if room_id is not None and not (room_version.room_id_is_create_event_id and type == CREATE):
        raw["room_id"] = room_id
    if state_key is not None:
        raw["state_key"] = state_key
    raw.update(extra)
    return Event(event_id, room_version, raw, rejected_reason)
