"""Power levels for the authorisation rules: reading them, and rule 10 (v10/v11: rule 9).

Spec: content/rooms/v12.md "Authorisation rules" (the power-level notes and rule 10),
content/server-server-api.md "Checks performed on receipt of a PDU" → "Definitions"
(required power level; invite, kick, ban and redact levels and their defaults), and
event-schemas/schema/m.room.power_levels.yaml (defaults without a power-levels event).
Room versions 10+ accept integers only ("integer-only power levels"); anything else in a
stored power-levels event is ignored here and the default is used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from node.events.pdu import POWER_LEVELS, Event
from node.rooms.auth_common import (
    StateMap,
    create_event_of,
    deny,
    get_room_creators,
    is_valid_user_id,
)

# The levels checked by rule 10.6, with their defaults ("Definitions" and the schema).
LEVEL_DEFAULTS: dict[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "redact": 50,
    "kick": 50,
    "invite": 0,
}
# Without any m.room.power_levels event, v10/v11 creators have this level.
CREATOR_LEVEL_WITHOUT_POWER_LEVELS = 100


def as_int(value: object) -> int | None:
    """``value`` if it is a JSON integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _power_levels_content(state: StateMap) -> Mapping[str, Any] | None:
    event = state.get((POWER_LEVELS, ""))
    return None if event is None else event.content


def get_user_power_level(user_id: str, state: StateMap) -> int | float:
    """The user's power level in ``state``; ``math.inf`` for v12 room creators."""
    create = create_event_of(state)
    privileged = create is not None and create.room_version.privileged_creators
    if privileged and user_id in get_room_creators(state):
        return math.inf
    content = _power_levels_content(state)
    if content is not None:
        users = content.get("users")
        if isinstance(users, Mapping):
            level = as_int(users.get(user_id))
            if level is not None:
                return level
        return named_level(state, "users_default")
    if create is not None and not privileged and user_id in get_room_creators(state):
        return CREATOR_LEVEL_WITHOUT_POWER_LEVELS
    return 0


def named_level(state: StateMap, name: str) -> int:
    """A top-level level (``invite``, ``kick``, ``ban``, ``redact``, ``*_default``)."""
    content = _power_levels_content(state)
    level = None if content is None else as_int(content.get(name))
    return LEVEL_DEFAULTS[name] if level is None else level


def required_power_level(event: Event, state: StateMap) -> int:
    """The event type's *required power level*: ``events[type]``, else the state or
    events default depending on whether the event is a state event."""
    content = _power_levels_content(state)
    if content is not None:
        events = content.get("events")
        if isinstance(events, Mapping):
            level = as_int(events.get(event.type))
            if level is not None:
                return level
    return named_level(state, "state_default" if event.is_state else "events_default")


# -- rule 10: m.room.power_levels -----------------------------------------------------------


def _int_map(value: object) -> dict[str, int]:
    """The integer entries of a stored ``events``/``notifications``/``users`` object."""
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if as_int(v) is not None}


def _alterations(
    old: Mapping[str, int], new: Mapping[str, int]
) -> Iterator[tuple[str, int | None, int | None]]:
    """(key, current value, new value) for each key added, changed or removed."""
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if before != after:
            yield key, before, after


def check_power_levels_event(event: Event, state: StateMap) -> None:
    """Rule 10 (v10/v11: 9) for an ``m.room.power_levels`` event; returns when allowed."""
    version = event.room_version
    content = event.content

    # 10.1 The seven top-level levels, when present, must be integers.
    for name in LEVEL_DEFAULTS:
        if name in content and as_int(content[name]) is None:
            raise deny(version, "10.1", f"{name!r} is not an integer")

    # 10.2 `events` and `notifications`, when present, must map to integers.
    for name in ("events", "notifications"):
        if name not in content:
            continue
        value = content[name]
        if not isinstance(value, Mapping) or any(as_int(v) is None for v in value.values()):
            raise deny(version, "10.2", f"{name!r} is not an object of integers")

    # 10.3 `users` must map valid user IDs to integers. An absent `users` is read as {}
    # (the rule does not say "present", but every implementation reads it so).
    users = content.get("users", {})
    if not isinstance(users, Mapping):
        raise deny(version, "10.3", "'users' is not an object")
    for user_id, level in users.items():
        if not is_valid_user_id(user_id):
            raise deny(version, "10.3", f"'users' key {user_id!r} is not a valid user ID")
        if as_int(level) is None:
            raise deny(version, "10.3", f"'users' value for {user_id} is not an integer")

    # 10.4 (v12 only) Room creators cannot be listed in `users`.
    if version.privileged_creators:
        listed = sorted(get_room_creators(state) & set(users))
        if listed:
            raise deny(version, "10.4", f"room creators cannot be in 'users': {listed}")

    # 10.5 The first power-levels event of the room is allowed.
    previous = _power_levels_content(state)
    if previous is None:
        return

    sender_level = get_user_power_level(event.sender, state)

    # 10.6 Added, changed or removed top-level levels: neither the current nor the new
    # value may be above the sender's level. (A missing value has nothing to compare.)
    for name in LEVEL_DEFAULTS:
        before, after = as_int(previous.get(name)), as_int(content.get(name))
        if before == after:
            continue
        if before is not None and before > sender_level:
            raise deny(version, "10.6.1", f"current {name!r} {before} is above the sender's")
        if after is not None and after > sender_level:
            raise deny(version, "10.6.2", f"new {name!r} {after} is above the sender's")

    for name in ("events", "notifications"):
        changes = list(_alterations(_int_map(previous.get(name)), _int_map(content.get(name))))
        # 10.7 Changed or removed entries: the current value may not be above the sender's.
        for key, before, _after in changes:
            if before is not None and before > sender_level:
                raise deny(version, "10.7.1", f"current {name}[{key!r}] is above the sender's")
        # 10.8 Added or changed entries: the new value may not be above the sender's.
        for key, _before, after in changes:
            if after is not None and after > sender_level:
                raise deny(version, "10.8.1", f"new {name}[{key!r}] is above the sender's")

    user_changes = list(_alterations(_int_map(previous.get("users")), _int_map(users)))
    # 10.9 Changed or removed users other than the sender: their current level must be
    # below the sender's.
    for user_id, before, _after in user_changes:
        if user_id != event.sender and before is not None and before >= sender_level:
            raise deny(
                version, "10.9.1", f"cannot change {user_id}, whose level is not below the sender's"
            )
    # 10.10 Added or changed users: the new level may not be above the sender's.
    for user_id, _before, after in user_changes:
        if after is not None and after > sender_level:
            raise deny(version, "10.10.1", f"new level for {user_id} is above the sender's")

    # 10.11 (printed as a second "10." in the v12 text; v10/v11: 9.10) Otherwise, allow.
