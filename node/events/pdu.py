"""The PDU model: a persistent data unit as it travels between servers.

An :class:`Event` keeps the PDU's raw JSON object untouched (so it can be re-hashed,
re-signed and served verbatim) next to read-only accessors for the fields the room
algorithms use. Spec: api/server-server/definitions/pdu_v6.yaml .. pdu_v12.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.events.room_versions import RoomVersion

StateKey = tuple[str, str]  # (event type, state_key)

CREATE = "m.room.create"
MEMBER = "m.room.member"
JOIN_RULES = "m.room.join_rules"
POWER_LEVELS = "m.room.power_levels"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
REDACTION = "m.room.redaction"


@dataclass(frozen=True, slots=True, eq=False)
class Event:
    """One PDU. ``raw`` is the PDU object exactly as built or received (never mutated)."""

    event_id: str
    room_version: RoomVersion
    raw: Mapping[str, Any]
    # Set by the receive pipeline / store when the event failed its checks.
    rejected_reason: str | None = field(default=None, compare=False)

    @classmethod
    def from_pdu(cls, pdu: Mapping[str, Any], room_version: RoomVersion) -> Event:
        """Wrap a PDU, computing its event ID from the reference hash (room v4+ format)."""
        from node.events.hashing import compute_event_id

        return cls(compute_event_id(pdu, room_version), room_version, pdu)

    # -- fields -------------------------------------------------------------------------

    @property
    def type(self) -> str:
        return self.raw["type"]

    @property
    def state_key(self) -> str | None:
        return self.raw.get("state_key")

    @property
    def is_state(self) -> bool:
        return "state_key" in self.raw

    @property
    def key(self) -> StateKey:
        """The (type, state_key) pair of a state event."""
        sk = self.raw.get("state_key")
        if sk is None:
            raise ValueError(f"{self.event_id} is not a state event")
        return (self.raw["type"], sk)

    @property
    def sender(self) -> str:
        return self.raw["sender"]

    @property
    def content(self) -> Mapping[str, Any]:
        content = self.raw.get("content")
        return content if isinstance(content, Mapping) else {}

    @property
    def room_id(self) -> str:
        """The room ID; for a v12 create event (which has none) it is derived from the ID."""
        room_id = self.raw.get("room_id")
        if room_id is None and self.room_version.room_id_is_create_event_id and self.type == CREATE:
            return "!" + self.event_id[1:]
        return room_id  # type: ignore[return-value]

    @property
    def prev_event_ids(self) -> list[str]:
        return list(self.raw.get("prev_events", ()))

    @property
    def auth_event_ids(self) -> list[str]:
        return list(self.raw.get("auth_events", ()))

    @property
    def depth(self) -> int:
        return int(self.raw.get("depth", 0))

    @property
    def origin_server_ts(self) -> int:
        return int(self.raw.get("origin_server_ts", 0))

    @property
    def membership(self) -> str | None:
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    @property
    def redacts(self) -> str | None:
        """The event a redaction targets (top level before v11, in content from v11)."""
        if self.room_version.redacts_in_content:
            r = self.content.get("redacts")
        else:
            r = self.raw.get("redacts")
        return r if isinstance(r, str) else None

    @property
    def rejected(self) -> bool:
        return self.rejected_reason is not None

    def __repr__(self) -> str:
        sk = f" {self.state_key!r}" if self.is_state else ""
        return f"<Event {self.event_id} {self.type}{sk} from {self.raw.get('sender')}>"
