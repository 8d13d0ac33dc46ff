"""Shared pieces of the room authorisation rules: the error, rule numbers, IDs, state lookups.

Spec: content/rooms/v10.md, v11.md and v12.md "Authorisation rules". The rule numbers
used in the code are those of room version 12; :func:`rule_number` turns them into the
numbers of the event's own room version, so a rejection in a v10 room names the v10 rule.
"""

from __future__ import annotations

from collections.abc import Mapping

from node.events.pdu import CREATE, JOIN_RULES, MEMBER, Event, StateKey
from node.events.room_versions import RoomVersion
from node.ids import InvalidId, UserID

StateMap = Mapping[StateKey, Event]


class AuthError(Exception):
    """An event failed an authorisation rule; ``str(err)`` is ``"<rule>: <reason>"``.

    ``rule`` is the rule number as written in the spec text of the event's room version
    (for example ``"5.3.2"`` in room version 12 is ``"4.3.2"`` in versions 10 and 11).
    """

    errcode = "M_FORBIDDEN"

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason


def rule_number(room_version: RoomVersion, v12_rule: str) -> str:
    """The number that the room version's own rule list gives to the v12 rule ``v12_rule``.

    Room version 12 inserted rule 2 (room ID is the create event's ID) and rule 10.4
    (creators cannot be in ``users``); rules 1.x keep their numbers in every version.
    """
    parts = v12_rule.split(".")
    top = int(parts[0])
    if top == 10 and len(parts) > 1 and not room_version.privileged_creators:
        sub = int(parts[1])
        if sub > 4:
            parts[1] = str(sub - 1)
    if top >= 3 and not room_version.room_id_is_create_event_id:
        parts[0] = str(top - 1)
    return ".".join(parts)


def deny(room_version: RoomVersion, v12_rule: str, reason: str) -> AuthError:
    """An :class:`AuthError` for the v12-numbered rule, renumbered for ``room_version``."""
    return AuthError(rule_number(room_version, v12_rule), reason)


# -- identifiers (content/appendices.md "Identifier Grammar") --------------------------------


def is_valid_user_id(value: object) -> bool:
    """Whether ``value`` is a user ID that servers must accept in events.

    This is the lenient grammar of :meth:`node.ids.UserID.parse` ("Historical User IDs"):
    the localpart may be any non-surrogate code points except ``:`` and NUL (even empty),
    the domain must be a server name, and the whole ID must fit in 255 bytes of UTF-8.
    """
    if not isinstance(value, str):
        return False
    try:
        UserID.parse(value)
    except InvalidId:
        return False
    return True


def server_of(identifier: str) -> str | None:
    """The domain part of ``@user:domain`` or ``!room:domain`` (None when there is none)."""
    if not isinstance(identifier, str) or ":" not in identifier:
        return None
    return identifier.split(":", 1)[1]


# -- room state lookups -------------------------------------------------------------------


def create_event_of(state: StateMap) -> Event | None:
    return state.get((CREATE, ""))


def membership_of(state: StateMap, user_id: str) -> str:
    """The user's current membership; no ``m.room.member`` event counts as ``leave``."""
    member = state.get((MEMBER, user_id))
    if member is None:
        return "leave"
    return member.membership or "leave"


def join_rule_of(state: StateMap) -> str | None:
    """The ``join_rule`` of the current ``m.room.join_rules`` event, None without one."""
    event = state.get((JOIN_RULES, ""))
    if event is None:
        return None
    rule = event.content.get("join_rule")
    return rule if isinstance(rule, str) else None


def get_room_creators(state: StateMap) -> set[str]:
    """The room creators according to the ``m.room.create`` event in ``state``.

    v10: ``content.creator``; v11: the create event's ``sender``; v12: the sender plus
    ``content.additional_creators`` ("room creators" note in content/rooms/v12.md).
    """
    create = create_event_of(state)
    if create is None:
        return set()
    version = create.room_version
    if not version.implicit_room_creator:
        creator = create.content.get("creator")
        return {creator} if isinstance(creator, str) else set()
    creators = {create.sender}
    if version.privileged_creators:
        additional = create.content.get("additional_creators")
        if isinstance(additional, list):
            creators.update(user for user in additional if isinstance(user, str))
    return creators
