"""The authorisation rules of room versions 10, 11 and 12, as pure functions.

Spec: content/rooms/v12.md, v11.md and v10.md "Authorisation rules";
content/server-server-api.md "Auth events selection" and "Checks performed on receipt of
a PDU"; content/rooms/fragments/v3-handling-redactions.md "Handling redactions".

Comments carry the rule numbers of room version 12. Versions 10 and 11 have no rule 2
and no rule 10.4, so their later rules are numbered one lower (v12 rule 5.3.2 is v10/v11
rule 4.3.2); :class:`AuthError` reports the number of the event's own room version.

The rules are split in two, so the receive pipeline and state resolution can call the
half they need:

* :func:`check_state_independent_auth_rules`: rule 1 (create events), rule 2 (v12: the
  room ID is the create event's ID), rule 3 (the listed auth events themselves);
* :func:`check_state_dependent_auth_rules`: rules 4 to 11 against a state map, which
  must hold the ``m.room.create`` event (in v12 too, although v12 never lists it).

Not checked here, because they need keys or are checked earlier by the pipeline: "Events
must be signed by the server denoted by the sender property", and the cryptographic half
of rule 5.2.1 (see :mod:`node.rooms.auth_members`). The *redact level* is not part of the
rules in any of these versions: :func:`redaction_is_allowed` applies it, per "Handling
redactions", before a redaction is applied or sent to clients.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from node.events.pdu import (
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    REDACTION,
    THIRD_PARTY_INVITE,
    Event,
    StateKey,
)
from node.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from node.rooms.auth_common import (
    AuthError,
    StateMap,
    create_event_of,
    deny,
    get_room_creators,
    is_valid_user_id,
    membership_of,
    server_of,
)
from node.rooms.auth_members import check_member_event
from node.rooms.auth_power import (
    check_power_levels_event,
    get_user_power_level,
    named_level,
    required_power_level,
)

__all__ = [
    "AuthError",
    "auth_types_for_event",
    "check_auth_rules",
    "check_state_dependent_auth_rules",
    "check_state_independent_auth_rules",
    "get_room_creators",
    "get_user_power_level",
    "redaction_is_allowed",
]


def auth_types_for_event(room_version: RoomVersion, pdu: Mapping[str, Any]) -> set[StateKey]:
    """The state keys whose current events go in ``auth_events`` ("Auth events selection").

    ``pdu`` is the event being built or checked (its JSON object). The create event has no
    auth events; in v12 the create event is never selected, its ID being the room ID.
    """
    event_type = pdu.get("type")
    if event_type == CREATE:
        return set()
    keys: set[StateKey] = {(POWER_LEVELS, "")}
    if not room_version.room_id_is_create_event_id:
        keys.add((CREATE, ""))
    sender = pdu.get("sender")
    if isinstance(sender, str):
        keys.add((MEMBER, sender))
    if event_type != MEMBER:
        return keys

    content = pdu.get("content")
    content = content if isinstance(content, Mapping) else {}
    membership = content.get("membership")
    target = pdu.get("state_key")
    if isinstance(target, str):
        keys.add((MEMBER, target))
    if membership in ("join", "invite", "knock"):
        keys.add((JOIN_RULES, ""))
    if membership == "invite":
        invite = content.get("third_party_invite")
        signed = invite.get("signed") if isinstance(invite, Mapping) else None
        token = signed.get("token") if isinstance(signed, Mapping) else None
        if isinstance(token, str):
            keys.add((THIRD_PARTY_INVITE, token))
    # Every supported version (10, 11, 12) supports restricted rooms.
    if membership == "join" and room_version.knock_restricted_join_rule:
        authoriser = content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str):
            keys.add((MEMBER, authoriser))
    return keys


# -- rules 1 to 3: the event and its auth events -------------------------------------------


def check_state_independent_auth_rules(
    event: Event, auth_events: Sequence[Event], create_event: Event | None
) -> None:
    """Rules 1, 2 (v12) and 3 (v10/v11: 1 and 2). Returns when they pass.

    ``auth_events`` must be the events listed in the event's ``auth_events``, all of them
    (an unlisted or a missing one is an :class:`AuthError` under rule 3). ``create_event``
    is the room's create event in v12, where it is not listed; v10/v11 ignore it.
    """
    version = event.room_version
    if event.type == CREATE:
        _check_create_event(event)
        return

    # 2 (v12) The room ID is the ID of an accepted create event, with `!` for `$`.
    if version.room_id_is_create_event_id:
        _check_room_id_names_create_event(event, create_event)

    # 3 The listed auth events.
    listed = event.auth_event_ids
    given = {auth_event.event_id: auth_event for auth_event in auth_events}
    unlisted = sorted(given.keys() - set(listed))
    if unlisted:
        raise deny(version, "3", f"auth events given but not listed: {unlisted}")
    missing = sorted(set(listed) - given.keys())
    if missing:
        raise deny(version, "3", f"auth events missing: {missing}")
    chosen = [given[event_id] for event_id in listed]

    # 3.1 No two entries for one (type, state_key).
    counts = Counter((auth_event.type, auth_event.state_key) for auth_event in chosen)
    duplicates = sorted(str(key) for key, n in counts.items() if n > 1)
    if duplicates:
        raise deny(version, "3.1", f"duplicate auth events for {', '.join(duplicates)}")

    # 3.2 Only entries the auth events selection would choose (v12: never the create).
    allowed = auth_types_for_event(version, event.raw)
    for auth_event in chosen:
        if (auth_event.type, auth_event.state_key) not in allowed:
            raise deny(version, "3.2", f"auth event {auth_event.event_id} is not selectable")

    # 3.3 No rejected entries.
    for auth_event in chosen:
        if auth_event.rejected:
            raise deny(version, "3.3", f"auth event {auth_event.event_id} was rejected")

    # 3.4 (v10/v11 only: 2.4) The create event must be among the entries.
    if not version.room_id_is_create_event_id and not any(e.type == CREATE for e in chosen):
        raise deny(version, "3.4", "no m.room.create event among the auth events")

    # 3.5 All entries belong to the event's room.
    for auth_event in chosen:
        if auth_event.room_id != event.room_id:
            raise deny(version, "3.5", f"auth event {auth_event.event_id} is in another room")


def _check_create_event(event: Event) -> None:
    """Rule 1: an ``m.room.create`` event is decided by itself."""
    version = event.room_version
    content = event.content

    # 1.1 It is the first event: no prev_events.
    if event.prev_event_ids:
        raise deny(version, "1.1", "the create event has prev_events")

    # 1.2 v12: it has no room_id (the room ID derives from its event ID).
    #     v10/v11: the room ID's domain is the sender's domain.
    if version.room_id_is_create_event_id:
        if "room_id" in event.raw:
            raise deny(version, "1.2", "the create event has a room_id")
    else:
        room_server = server_of(event.raw.get("room_id"))
        if room_server is None or room_server != server_of(event.sender):
            raise deny(version, "1.2", "the room ID's domain is not the sender's domain")

    # 1.3 content.room_version, if present, is a version this server recognises.
    if "room_version" in content:
        claimed = content["room_version"]
        if not isinstance(claimed, str) or claimed not in KNOWN_ROOM_VERSIONS:
            raise deny(version, "1.3", f"unrecognised room_version {claimed!r}")

    # 1.4 v10: content.creator is required. (v11: 1.4 is "otherwise, allow".)
    if not version.implicit_room_creator and "creator" not in content:
        raise deny(version, "1.4", "the create event has no creator")

    # 1.4 v12: additional_creators, if present, is an array of valid user IDs.
    if version.privileged_creators and "additional_creators" in content:
        additional = content["additional_creators"]
        if not isinstance(additional, list) or not all(map(is_valid_user_id, additional)):
            raise deny(version, "1.4", "additional_creators is not an array of user IDs")

    # 1.5 (v11: 1.4) Otherwise, allow.


def _check_room_id_names_create_event(event: Event, create_event: Event | None) -> None:
    # 2 (v12) "If the event's room_id is not an event ID for an accepted (not rejected)
    # m.room.create event, with the sigil ! instead of $, reject."
    version = event.room_version
    if create_event is None or create_event.type != CREATE:
        raise deny(version, "2", "the room's create event is not known")
    if create_event.rejected:
        raise deny(version, "2", f"the create event {create_event.event_id} was rejected")
    if event.room_id != "!" + create_event.event_id[1:]:
        raise deny(version, "2", f"room ID is not the ID of create event {create_event.event_id}")


# -- rules 4 to 11: against the room state ---------------------------------------------------


def check_state_dependent_auth_rules(event: Event, state: Mapping[StateKey, Event]) -> None:
    """Rules 4 to 11 (v10/v11: 3 to 10) against ``state``. Returns when allowed.

    ``state`` maps (type, state_key) to events and must hold the ``m.room.create`` event
    (also in v12). A create event is checked against rule 1 alone.
    """
    version = event.room_version
    if event.type == CREATE:
        _check_create_event(event)
        return

    create = create_event_of(state)
    if create is None:
        # Without a create event no rule below can be read; v12 rule 2 / v10-v11 rule 2.4.
        rule = "2" if version.room_id_is_create_event_id else "3.4"
        raise deny(version, rule, "no m.room.create event in the room state")
    if version.room_id_is_create_event_id:
        _check_room_id_names_create_event(event, create)

    # 4 m.federate: false keeps out senders from servers other than the creator's.
    if create.content.get("m.federate", True) is False:
        if server_of(event.sender) != server_of(create.sender):
            raise deny(version, "4", "the room does not federate with the sender's server")

    # 5 m.room.member events are decided by rule 5 alone.
    if event.type == MEMBER:
        check_member_event(event, state)
        return

    # 6 Everything else needs the sender joined.
    if membership_of(state, event.sender) != "join":
        raise deny(version, "6", "sender is not joined")

    sender_level = get_user_power_level(event.sender, state)

    # 7 m.room.third_party_invite: the invite level decides.
    if event.type == THIRD_PARTY_INVITE:
        if sender_level >= named_level(state, "invite"):
            return
        raise deny(version, "7.1", "sender's power level is below the invite level")

    # 8 The event type's required power level. (Redactions too: the redact level is not
    # an auth rule in v10-v12, see the note above the rules and redaction_is_allowed.)
    required = required_power_level(event, state)
    if required > sender_level:
        raise deny(version, "8", f"{event.type} needs power level {required}")

    # 9 A state_key starting with `@` belongs to that user.
    state_key = event.state_key
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != event.sender:
        raise deny(version, "9", "state_key starts with @ and is not the sender")

    # 10 m.room.power_levels.
    if event.type == POWER_LEVELS:
        check_power_levels_event(event, state)

    # 11 Otherwise, allow.


def check_auth_rules(
    event: Event, auth_events: Sequence[Event], create_event: Event | None = None
) -> None:
    """All the rules, with the state taken from the event's auth events (receive step 4,
    "Passes authorisation rules based on the event's auth events"). In v12 pass the
    room's ``create_event``, which the auth events never include."""
    check_state_independent_auth_rules(event, auth_events, create_event)
    if event.type == CREATE:
        return
    state: dict[StateKey, Event] = {auth_event.key: auth_event for auth_event in auth_events}
    if event.room_version.room_id_is_create_event_id and create_event is not None:
        state[(CREATE, "")] = create_event
    check_state_dependent_auth_rules(event, state)


# -- handling redactions -------------------------------------------------------------------


def redaction_is_allowed(redaction: Event, original: Event, state: StateMap) -> bool:
    """Whether an authorised ``m.room.redaction`` may be applied to ``original``
    (content/rooms/fragments/v3-handling-redactions.md). ``state`` is the room state the
    redaction is judged against (the state before it).

    A redaction that does not target ``original``, or targets an event of another room,
    never applies.
    """
    if redaction.type != REDACTION or redaction.redacts != original.event_id:
        return False
    if redaction.room_id != original.room_id:
        return False
    # 1. The sender has the redact level (even without the level to send such events).
    if get_user_power_level(redaction.sender, state) >= named_level(state, "redact"):
        return True
    # 2. The sender's server is the original sender's server.
    return server_of(redaction.sender) == server_of(original.sender)
