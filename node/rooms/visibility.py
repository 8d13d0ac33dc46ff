"""Which events of a room a user may see: ``m.room.history_visibility`` (pure, no I/O).

Spec: content/client-server-api/modules/history_visibility.md ("Server behaviour"),
_index.md "Leaving rooms", leaving.yaml (``/forget``: "a user will no longer be able
to retrieve history for this room"), rooms.yaml (``/state`` and ``/members`` of a user
who left: "the state of the room when they left").

The rules depend on the state of the room *at* the event: the ``history_visibility``
and the user's membership in force just before it. For a user who is allowed to
read the room at all, an event is visible when, at it:

1. ``history_visibility`` is ``world_readable``;
2. the user's membership is ``join``;
3. ``history_visibility`` is ``shared`` and the user joined at some point after the
   event (a later event of theirs sets their membership to ``join``);
4. the user's membership is ``invite`` and ``history_visibility`` is ``invited``;

and hidden otherwise. A missing or unknown ``history_visibility`` counts as
``shared``. An ``m.room.history_visibility`` event is visible if the value before
*or* after it allows it; so is the user's own ``m.room.member`` event with their
membership before or after it (:func:`event_visible`). That is Synapse's
``filter_events_for_client`` too, except that Synapse also always shows a user their
own leave that rejects an invite, and approximates rule 3 by "the user is in the
room or left it" (it then clamps /messages at the leave); this follows the spec.

Who may read a room at all (:attr:`RoomHistory.access`): a user who is joined, or
who was joined once and has not forgotten the room (spec: "After a user has left a
room, they may see any events which they were allowed to see before they left"),
or anyone while the room is currently ``world_readable`` (peeking). A user who
forgot the room is judged as if they had never been in it.

:class:`RoomHistory` holds, for one user and one room, the history_visibility and
membership changes in stream order (node/storage/visibility.py loads them) and
answers per position. Between two consecutive changes nothing the rules look at
changes, so it can also say where the next possibly visible event is
(:meth:`RoomHistory.backward_from`, :meth:`RoomHistory.forward_after`): paginating
endpoints jump over hidden stretches instead of reading them.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Protocol

from node.events.pdu import MEMBER

HISTORY_VISIBILITY = "m.room.history_visibility"

WORLD_READABLE = "world_readable"
SHARED = "shared"
INVITED = "invited"
JOINED = "joined"
VISIBILITIES = (WORLD_READABLE, SHARED, INVITED, JOINED)

JOIN = "join"
INVITE = "invite"


def effective_visibility(value: object) -> str:
    """The ``history_visibility`` a content value means: unknown or missing is shared."""
    return value if isinstance(value, str) and value in VISIBILITIES else SHARED


def membership_value(value: object) -> str | None:
    """A ``membership`` content value; anything but a string is no membership."""
    return value if isinstance(value, str) else None


class VisibilityEvent(Protocol):
    """What the rules read of an event (node.events.pdu.Event has it)."""

    @property
    def type(self) -> str: ...

    @property
    def state_key(self) -> str | None: ...

    @property
    def content(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A :class:`VisibilityEvent` read from a client-format event dict."""

    type: str
    state_key: str | None
    content: Mapping[str, Any]

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> ClientEvent:
        state_key = event.get("state_key")
        content = event.get("content")
        return cls(
            str(event.get("type", "")),
            state_key if isinstance(state_key, str) else None,
            content if isinstance(content, Mapping) else {},
        )


@dataclass(frozen=True, slots=True)
class StateAtEvent:
    """What the rules need of the room at an event, for one user.

    ``history_visibility`` and ``membership`` are those in force just before the
    event; ``joined_later``: the user's membership becomes ``join`` at some later
    point of the room's history."""

    history_visibility: str = SHARED
    membership: str | None = None
    joined_later: bool = False


def allowed(visibility: str, membership: str | None, joined_later: bool) -> bool:
    """Rules 1-5 of "Server behaviour" for one (history_visibility, membership)."""
    if visibility == WORLD_READABLE:
        return True
    if membership == JOIN:
        return True
    if visibility == SHARED and joined_later:
        return True
    return membership == INVITE and visibility == INVITED


def state_after(user_id: str | None, event: VisibilityEvent, before: StateAtEvent) -> StateAtEvent:
    """``before`` updated by ``event`` itself: a history_visibility event changes the
    visibility, the user's own member event their membership. ``user_id`` None: a
    user whose membership does not count (one who forgot the room)."""
    if event.state_key is None:
        return before
    if event.type == HISTORY_VISIBILITY and event.state_key == "":
        value = effective_visibility(event.content.get("history_visibility"))
        return replace(before, history_visibility=value)
    if event.type == MEMBER and user_id is not None and event.state_key == user_id:
        return replace(before, membership=membership_value(event.content.get("membership")))
    return before


def event_visible(user_id: str | None, event: VisibilityEvent, before: StateAtEvent) -> bool:
    """May ``user_id`` see ``event``, given the state just before it? The state after
    it counts too (history_visibility events, the user's own member events)."""
    if allowed(before.history_visibility, before.membership, before.joined_later):
        return True
    after = state_after(user_id, event, before)
    return after != before and allowed(
        after.history_visibility, after.membership, after.joined_later
    )


class Access(enum.Enum):
    """Why a user may read a room (NONE: they may not: 403)."""

    JOINED = "joined"  # in the room now
    DEPARTED = "departed"  # was joined once, is not now, has not forgotten the room
    PEEKING = "peeking"  # none of those, but the room is world_readable now
    NONE = "none"


@dataclass(frozen=True)
class RoomHistory:
    """One user's view of one room's history.

    ``visibility_changes``: (stream ordering, effective history_visibility) of the
    room's history_visibility events; ``membership_changes``: (stream ordering,
    membership) of the user's member events; both ascending. ``current_*`` come from
    the room's current state, ``forgotten`` from /forget."""

    user_id: str
    visibility_changes: Sequence[tuple[int, str]] = ()
    membership_changes: Sequence[tuple[int, str | None]] = ()
    current_membership: str | None = None
    current_visibility: str = SHARED
    forgotten: bool = False

    # -- who may read ---------------------------------------------------------------------

    @cached_property
    def ever_joined(self) -> bool:
        return any(m == JOIN for _, m in self.membership_changes)

    @cached_property
    def access(self) -> Access:
        if self.current_membership == JOIN:
            return Access.JOINED
        if self.ever_joined and not self.forgotten:
            return Access.DEPARTED
        if self.current_visibility == WORLD_READABLE:
            return Access.PEEKING
        return Access.NONE

    @property
    def may_read(self) -> bool:
        return self.access is not Access.NONE

    @cached_property
    def stranger(self) -> bool:
        """Judged as never having been in the room (they forgot it)."""
        return self.forgotten and self.current_membership != JOIN

    @cached_property
    def left_at(self) -> int | None:
        """For a user who left: the position of the member event that ended their
        last stretch of ``join`` (the state "when they left" is the state after it).
        None for a user who is joined or never was."""
        if self.access is not Access.DEPARTED:
            return None
        last_join = self._last_join
        for position, membership in self.membership_changes:
            if last_join is not None and position > last_join and membership != JOIN:
                return position
        # No change after the last join although the current state says otherwise
        # (possible where the DAG forked): the last change is the best guess.
        return self.membership_changes[-1][0] if self.membership_changes else None

    # -- the state at a position -------------------------------------------------------------

    @cached_property
    def _vis_positions(self) -> list[int]:
        return [p for p, _ in self.visibility_changes]

    @cached_property
    def _member_positions(self) -> list[int]:
        return [] if self.stranger else [p for p, _ in self.membership_changes]

    @cached_property
    def _last_join(self) -> int | None:
        joins = [p for p, m in self.membership_changes if m == JOIN]
        return joins[-1] if joins else None

    def state_at(self, position: int) -> StateAtEvent:
        """The state just before the event at ``position`` (changes at smaller
        positions apply; one at ``position`` is the event itself)."""
        i = bisect_left(self._vis_positions, position)
        visibility = self.visibility_changes[i - 1][1] if i else SHARED
        if self.stranger:
            return StateAtEvent(visibility)
        j = bisect_left(self._member_positions, position)
        membership = self.membership_changes[j - 1][1] if j else None
        last_join = self._last_join
        return StateAtEvent(visibility, membership, last_join is not None and last_join > position)

    def visible(self, event: VisibilityEvent, position: int) -> bool:
        """May the user see ``event``, stored at ``position``?"""
        user = None if self.stranger else self.user_id
        return event_visible(user, event, self.state_at(position))

    # -- skipping hidden stretches ---------------------------------------------------------

    @cached_property
    def _points(self) -> list[int]:
        """Positions of the changes the rules look at, ascending."""
        return sorted(set(self._vis_positions) | set(self._member_positions))

    def _open_between(self, i: int, probe: int) -> bool:
        """Whether an ordinary event (not a change itself) strictly between change
        ``i - 1`` and change ``i`` is visible (``i`` 0: before the first change;
        ``i`` len: after the last). ``probe``: a position in that stretch, used when
        there are no changes at all. (For an empty stretch the answer is of no
        consequence: the callers return the same position either way.)"""
        points = self._points
        if not points:
            position = probe
        elif i == 0:
            position = points[0] - 1
        else:
            position = points[i - 1] + 1
        state = self.state_at(position)
        return allowed(state.history_visibility, state.membership, state.joined_later)

    def backward_from(self, cursor: int) -> int | None:
        """The greatest position <= ``cursor`` that may hold a visible event: a
        backwards reader may continue from there. None: nothing at or before
        ``cursor`` is visible."""
        points = self._points
        i = bisect_right(points, cursor)  # changes at or before the cursor
        if i and points[i - 1] == cursor:
            return cursor  # a change itself: judged on its own
        if self._open_between(i, cursor):
            return cursor
        return points[i - 1] if i else None

    def forward_after(self, after: int) -> int | None:
        """The greatest position >= ``after`` such that nothing in (``after``, it] is
        visible: a forwards reader may continue after it. None: nothing after
        ``after`` is visible."""
        points = self._points
        i = bisect_right(points, after)  # the next change is points[i]
        if self._open_between(i, after + 1):
            return after
        return points[i] - 1 if i < len(points) else None

    def upper_bound(self) -> int | None:
        """The last position that may hold a visible event (None: no bound, the
        stretch after the last change is visible)."""
        points = self._points
        if self._open_between(len(points), points[-1] + 1 if points else 0):
            return None
        return points[-1] if points else 0
