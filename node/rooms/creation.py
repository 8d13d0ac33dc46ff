"""Which events a new room starts with (pure): POST /createRoom's event plan.

Spec: content/client-server-api/_index.md "Creation" (the order of events) and
api/client-server/create_room.yaml (presets, initial_state, overrides).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.events.pdu import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS
from node.events.room_versions import RoomVersion

PRESETS = ("private_chat", "public_chat", "trusted_private_chat")


@dataclass(frozen=True)
class PlannedEvent:
    type: str
    state_key: str
    content: Mapping[str, Any]


@dataclass(frozen=True)
class RoomRequest:
    """The parsed body of POST /createRoom (the parts that shape the events)."""

    creator: str
    room_version: RoomVersion
    preset: str = "private_chat"
    name: str | None = None
    topic: str | None = None
    creation_content: Mapping[str, Any] = field(default_factory=dict)
    initial_state: Sequence[PlannedEvent] = ()
    power_level_content_override: Mapping[str, Any] | None = None
    invite: Sequence[str] = ()
    is_direct: bool = False
    canonical_alias: str | None = None
    # displayname / avatar_url for the creator's join event
    creator_profile: Mapping[str, Any] = field(default_factory=dict)


def default_power_levels(req: RoomRequest) -> dict[str, Any]:
    users: dict[str, int] = {}
    if not req.room_version.privileged_creators:
        users[req.creator] = 100  # v12 creators have infinite power and are not listed
    if req.preset == "trusted_private_chat":
        for invitee in req.invite:
            users[invitee] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 150 if req.room_version.privileged_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if req.preset == "public_chat" else 0,
        "historical": 100,
        "notifications": {"room": 50},
    }


def plan_room(req: RoomRequest) -> list[PlannedEvent]:
    """The events of a new room, in the order the spec gives."""
    create_content: dict[str, Any] = dict(req.creation_content)
    create_content["room_version"] = req.room_version.identifier
    if not req.room_version.implicit_room_creator:
        create_content["creator"] = req.creator
    plan = [
        # 1. m.room.create
        PlannedEvent(CREATE, "", create_content),
        # 2. the creator joins
        PlannedEvent(MEMBER, req.creator, {**req.creator_profile, "membership": "join"}),
    ]
    # 3. power levels, with the override merged over the defaults
    power = default_power_levels(req)
    if req.power_level_content_override:
        power.update(req.power_level_content_override)
    plan.append(PlannedEvent(POWER_LEVELS, "", power))
    # 4. canonical alias
    if req.canonical_alias:
        plan.append(PlannedEvent("m.room.canonical_alias", "", {"alias": req.canonical_alias}))
    # 5. the preset's events
    public = req.preset == "public_chat"
    plan.append(PlannedEvent(JOIN_RULES, "", {"join_rule": "public" if public else "invite"}))
    plan.append(PlannedEvent("m.room.history_visibility", "", {"history_visibility": "shared"}))
    plan.append(
        PlannedEvent(
            "m.room.guest_access", "", {"guest_access": "forbidden" if public else "can_join"}
        )
    )
    # 6. initial_state (overrides the preset's events of the same type and key)
    for ev in req.initial_state:
        plan = [
            p
            for p in plan
            if (p.type, p.state_key) != (ev.type, ev.state_key)
            or p.type in (CREATE, MEMBER, POWER_LEVELS)
        ]
        plan.append(ev)
    # 7. name and topic
    if req.name is not None:
        plan.append(PlannedEvent("m.room.name", "", {"name": req.name}))
    if req.topic is not None:
        plan.append(PlannedEvent("m.room.topic", "", {"topic": req.topic}))
    # 8. invites of users on this server (users on other servers are invited after
    # the room exists: their server countersigns the invite, node/federation/joins.py)
    ours = ":" + req.creator.split(":", 1)[1]
    for invitee in req.invite:
        if not invitee.endswith(ours):
            continue
        content: dict[str, Any] = {"membership": "invite"}
        if req.is_direct:
            content["is_direct"] = True
        plan.append(PlannedEvent(MEMBER, invitee, content))
    return plan
