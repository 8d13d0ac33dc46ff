"""Composer commands: ``/join``, ``/invite``, ``/leave``, ``/topic``, ``/nick``; ``/call``
is checked here (:func:`call_peer`) and placed by the chat screen (tui/calls.py).

Each is one client-server API call (spec sections): ``POST /join/{roomIdOrAlias}``
(10.x room membership, joining), ``POST /rooms/{roomId}/invite``, ``POST
/rooms/{roomId}/leave``, ``PUT /rooms/{roomId}/state/m.room.topic`` (11.2.3.3) and
``PUT /profile/{userId}/displayname`` (10.x profiles). A refusal becomes a
``CommandError`` with the server's errcode and message, for the status line.
"""

from __future__ import annotations

from dataclasses import dataclass

import nio

USAGE = {
    "join": "/join #alias:server or !room_id:server",
    "invite": "/invite @user:server",
    "leave": "/leave",
    "topic": "/topic text",
    "nick": "/nick display name",
    "call": "/call",
}
NEEDS_ROOM = {"invite", "leave", "topic"}


class CommandError(Exception):
    """The command failed; the message is one line for the user."""


@dataclass(frozen=True)
class Command:
    name: str
    arg: str = ""


@dataclass(frozen=True)
class Done:
    message: str  # for the status line
    room_id: str | None = None  # the room joined, for /join


def parse_command(text: str) -> Command:
    """``/name arg`` as a Command. Raises ValueError for an unknown command or a
    missing or malformed argument."""
    name, _, arg = text[1:].partition(" ")
    arg = arg.strip()
    if name not in USAGE:
        raise ValueError(f"unknown command /{name} (see F1 for help)")
    if name == "join" and not (arg[:1] in ("#", "!") and ":" in arg):
        raise ValueError(f"usage: {USAGE[name]}")
    if name == "invite" and not (arg.startswith("@") and ":" in arg):
        raise ValueError(f"usage: {USAGE[name]}")
    if name in ("topic", "nick") and not arg:
        raise ValueError(f"usage: {USAGE[name]}")
    return Command(name, arg)


def call_peer(client: nio.AsyncClient, room_id: str | None) -> str:
    """The user ``/call`` rings in ``room_id``: its one other joined member (the VoIP
    module's 1:1 calls, modules/voip_events.md). Raises CommandError otherwise."""
    room = client.rooms.get(room_id or "")
    if room is None:
        raise CommandError("/call needs a room: open one first")
    others = sorted(u for u in room.users if u != client.user_id and u not in room.invited_users)
    if len(others) != 1:
        raise CommandError(
            f"cannot call: a call needs a room with exactly one other member"
            f" ({room.display_name} has {len(others)})"
        )
    return others[0]


def describe(response: object) -> str:
    """A refusal as ``M_ERRCODE: message`` (nio puts the errcode in ``status_code``)."""
    code = getattr(response, "status_code", None)
    message = getattr(response, "message", None) or "no reason given"
    return f"{code}: {message}" if code else str(message)


def _refused(what: str, response: object) -> CommandError:
    return CommandError(f"{what}: {describe(response)}")


async def run_command(client: nio.AsyncClient, room_id: str | None, command: Command) -> Done:
    """Run ``command`` in ``room_id`` (the room shown); the result for the status line.

    Raises CommandError if it needs a room and none is shown, or the server refuses.
    """
    name, arg = command.name, command.arg
    if name == "call":  # the chat screen places calls (tui/calls.py)
        raise CommandError("/call is run by the chat screen")
    if name in NEEDS_ROOM and room_id is None:
        raise CommandError(f"/{name} needs a room: open one first")
    if name == "join":
        joined = await client.join(arg)
        if not isinstance(joined, nio.JoinResponse):
            raise _refused(f"cannot join {arg}", joined)
        return Done(f"joined {arg}", joined.room_id)
    assert room_id is not None or name == "nick"
    if name == "invite":
        invited = await client.room_invite(room_id or "", arg)
        if not isinstance(invited, nio.RoomInviteResponse):
            raise _refused(f"cannot invite {arg}", invited)
        return Done(f"invited {arg}")
    if name == "leave":
        left = await client.room_leave(room_id or "")
        if not isinstance(left, nio.RoomLeaveResponse):
            raise _refused("cannot leave the room", left)
        return Done("left the room")
    if name == "topic":
        put = await client.room_put_state(room_id or "", "m.room.topic", {"topic": arg})
        if not isinstance(put, nio.RoomPutStateResponse):
            raise _refused("cannot set the topic", put)
        return Done("topic set")
    renamed = await client.set_displayname(arg)
    if not isinstance(renamed, nio.ProfileSetDisplayNameResponse):
        raise _refused("cannot change your name", renamed)
    return Done(f"you are now {arg}")
