"""Events as clients see them: the ClientEvent format.

Spec: api/client-server/definitions/client_event.yaml (and
client_event_without_room_id.yaml for /sync); unsigned.age is computed at serve time.
A redaction carries ``redacts`` both at the top level and in its content, whatever
the room version (rooms/v11.md: servers should add the one the version lacks).
"""

from __future__ import annotations

import time
from typing import Any

from node.events.pdu import Event


def to_client_event(
    event: Event, *, include_room_id: bool = True, now_ms: int | None = None
) -> dict[str, Any]:
    raw = event.raw
    out: dict[str, Any] = {
        "content": raw.get("content", {}),
        "event_id": event.event_id,
        "origin_server_ts": raw.get("origin_server_ts", 0),
        "sender": raw["sender"],
        "type": raw["type"],
    }
    if include_room_id:
        out["room_id"] = event.room_id
    if "state_key" in raw:
        out["state_key"] = raw["state_key"]
    target = event.redacts if raw["type"] == "m.room.redaction" else None
    if target is not None:
        # Both places, for older and newer clients alike (rooms/v11.md, "Moving the
        # redacts property"): the top level, and the content.
        out["redacts"] = target
        if out["content"].get("redacts") != target:
            out["content"] = {**out["content"], "redacts": target}
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    unsigned: dict[str, Any] = {"age": max(0, now_ms - int(raw.get("origin_server_ts", 0)))}
    served = raw.get("unsigned")
    if isinstance(served, dict) and "redacted_because" in served:
        unsigned["redacted_because"] = served["redacted_because"]
    out["unsigned"] = unsigned
    return out
