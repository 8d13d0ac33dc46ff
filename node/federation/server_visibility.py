"""Which events another server may see in full (pure, no I/O).

Spec: content/client-server-api/modules/history_visibility.md defines the rules for
users; the server-server API serves room history (``/backfill``,
``/get_missing_events``, ``/event``) to servers, and the spec leaves their rule to
implementations. This follows Synapse (``filter_events_for_server``): an event is
judged on the room state *at* it, i.e. the state before it with the event itself
applied (a history_visibility event is judged by the value it sets):

1. ``history_visibility`` ``world_readable`` or ``shared`` (or missing, or an unknown
   value, which count as ``shared``): the server sees the event;
2. ``invited``: the server sees it if one of its users is invited or joined there;
3. ``joined``: the server sees it if one of its users is joined there.

An event the server may not see is served *redacted* rather than dropped, so the
requesting server can still link the DAG and run the auth rules. Events with no
known state (outliers, rejected events) are served in full, as Synapse does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from node.events.pdu import MEMBER, StateKey
from node.events.redaction import redact
from node.events.room_versions import RoomVersion
from node.rooms.visibility import (
    HISTORY_VISIBILITY,
    INVITE,
    INVITED,
    JOIN,
    JOINED,
    SHARED,
    VisibilityEvent,
    effective_visibility,
    membership_value,
)

HISTORY_VISIBILITY_KEY: StateKey = (HISTORY_VISIBILITY, "")


def server_of(user_id: str) -> str | None:
    """The server part of a user ID (everything after the first ``:``)."""
    _, colon, server = user_id.partition(":")
    return server if colon and server else None


@dataclass(frozen=True, slots=True)
class ServerStateAtEvent:
    """What the rule reads of the room state at one event, for one server: the
    effective ``history_visibility`` and the memberships of that server's users."""

    history_visibility: str = SHARED
    memberships: tuple[str | None, ...] = ()


def visible_to_server(history_visibility: str, memberships: Iterable[str | None]) -> bool:
    """Rules 1-3 of the module docstring."""
    if history_visibility not in (INVITED, JOINED):
        return True
    allowed = (JOIN, INVITE) if history_visibility == INVITED else (JOIN,)
    return any(m in allowed for m in memberships)


def relevant_state_ids(state_ids: Mapping[StateKey, str], server_name: str) -> dict[StateKey, str]:
    """The entries of a state map the rule needs for ``server_name``: the
    history_visibility event and the member events of that server's users."""
    return {
        key: event_id
        for key, event_id in state_ids.items()
        if key == HISTORY_VISIBILITY_KEY or (key[0] == MEMBER and server_of(key[1]) == server_name)
    }


def server_state(state: Mapping[StateKey, VisibilityEvent], server_name: str) -> ServerStateAtEvent:
    """Read :class:`ServerStateAtEvent` from the state at an event (a map of events;
    entries other than :func:`relevant_state_ids` ones are ignored)."""
    hv_event = state.get(HISTORY_VISIBILITY_KEY)
    visibility = SHARED
    if hv_event is not None:
        visibility = effective_visibility(hv_event.content.get("history_visibility"))
    memberships = tuple(
        membership_value(event.content.get("membership"))
        for (etype, state_key), event in state.items()
        if etype == MEMBER and server_of(state_key) == server_name
    )
    return ServerStateAtEvent(visibility, memberships)


def pdu_for_server(
    pdu: Mapping[str, Any], room_version: RoomVersion, at: ServerStateAtEvent | None
) -> Mapping[str, Any]:
    """The PDU as a server is to receive it: in full when the rule lets it see the
    event (or the state at the event is unknown: ``at`` None), else redacted."""
    if at is None or visible_to_server(at.history_visibility, at.memberships):
        return pdu
    return redact(pdu, room_version)
