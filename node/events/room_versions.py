"""Room versions Croft understands, and the per-version switches the algorithms read.

Spec: content/rooms/_index.md (feature matrix) and content/rooms/v10.md, v11.md, v12.md.
Croft creates rooms in version 12 and joins and serves 10, 11 and 12.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class RedactionAlgorithm(Enum):
    """Which redaction text of the spec applies (VECTORS.md section 6c)."""

    V9 = "v9"  # room versions 9 and 10: fragments/v9-redactions.md
    V11 = "v11"  # room versions 11 and 12: fragments/v11-redactions.md


class StateResAlgorithm(Enum):
    V2 = "v2"  # fragments/v2-state-res.md
    V2_1 = "v2.1"  # the modified algorithm in rooms/v12.md (empty start map, conflicted subgraph)


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    redaction: RedactionAlgorithm
    state_res: StateResAlgorithm
    # v11+: `creator` is gone from m.room.create content; the sender is the creator.
    implicit_room_creator: bool
    # v11+: `redacts` lives in content rather than at the top level.
    redacts_in_content: bool
    # v12: the room ID is the create event's ID with `!`; create events carry no room_id;
    # the create event is never listed in auth_events.
    room_id_is_create_event_id: bool
    # v12: room creators (create sender + additional_creators) have infinite power.
    privileged_creators: bool
    # All three supported versions: knocking (v7), restricted joins (v8, v9 semantics),
    # integer-only power levels (v10) and strict canonical JSON (v6).
    knock_restricted_join_rule: bool = True
    strict_canonical_json: bool = True
    enforce_int_power_levels: bool = True


V10 = RoomVersion(
    identifier="10",
    redaction=RedactionAlgorithm.V9,
    state_res=StateResAlgorithm.V2,
    implicit_room_creator=False,
    redacts_in_content=False,
    room_id_is_create_event_id=False,
    privileged_creators=False,
)
V11 = RoomVersion(
    identifier="11",
    redaction=RedactionAlgorithm.V11,
    state_res=StateResAlgorithm.V2,
    implicit_room_creator=True,
    redacts_in_content=True,
    room_id_is_create_event_id=False,
    privileged_creators=False,
)
V12 = RoomVersion(
    identifier="12",
    redaction=RedactionAlgorithm.V11,
    state_res=StateResAlgorithm.V2_1,
    implicit_room_creator=True,
    redacts_in_content=True,
    room_id_is_create_event_id=True,
    privileged_creators=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {v.identifier: v for v in (V10, V11, V12)}
DEFAULT_ROOM_VERSION = V12


class UnsupportedRoomVersion(Exception):
    def __init__(self, identifier: object) -> None:
        super().__init__(f"unsupported room version: {identifier!r}")
        self.identifier = identifier


def room_version(identifier: str) -> RoomVersion:
    """Look up a room version by its identifier, raising UnsupportedRoomVersion."""
    try:
        return KNOWN_ROOM_VERSIONS[identifier]
    except (KeyError, TypeError):
        raise UnsupportedRoomVersion(identifier) from None
