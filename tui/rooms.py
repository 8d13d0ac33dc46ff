"""Rooms for the client: direct chats, room creation, search by name, room settings.

Spec sections (client-server API):

- Direct messaging (13.x "Direct Messaging"): the ``m.direct`` account data maps a user
  ID to the rooms that are direct chats with them; an invite that is a direct chat has
  ``is_direct`` in the invitee's ``m.room.member`` event. A client starting a direct
  chat creates a room with ``is_direct``, then adds it to ``m.direct`` (``PUT
  /user/{userId}/account_data/m.direct``, 10.x client config), keeping the other entries.
- Creating rooms (``POST /createRoom``, 10.1): name, topic, alias local part, the
  ``public_chat`` / ``private_chat`` / ``trusted_private_chat`` presets, ``invite`` and
  ``initial_state`` (``m.room.encryption`` with ``m.megolm.v1.aes-sha2``, 11.12 E2EE).
- Room settings: ``PUT /rooms/{roomId}/state/m.room.name`` and ``m.room.topic``
  (11.2.3 room events); the server refuses with ``M_FORBIDDEN`` without the power.

The functions that talk to the server take the nio client and raise ``RoomError`` with
one line for the user (``M_ERRCODE: message``); the rest is pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import nio

from tui.commands import describe

DIRECT = "m.direct"
MEGOLM = "m.megolm.v1.aes-sha2"


@dataclass(frozen=True)
class RoomEntry:
    """One line of the room list."""

    room_id: str
    name: str
    unread: int = 0
    highlights: int = 0
    direct: bool = False  # a direct chat (an invite with ``is_direct``, or in m.direct)


class RoomError(Exception):
    """The server refused; the message is one line for the user."""


# -- m.direct: pure ---------------------------------------------------------------------


def parse_direct(content: Any) -> dict[str, list[str]]:
    """``m.direct`` content as user ID -> room IDs; entries of the wrong shape dropped."""
    if not isinstance(content, Mapping):
        return {}
    out: dict[str, list[str]] = {}
    for user_id, rooms in content.items():
        if isinstance(user_id, str) and isinstance(rooms, list):
            kept = [r for r in rooms if isinstance(r, str)]
            if kept:
                out[user_id] = list(dict.fromkeys(kept))
    return out


def merge_direct(content: Any, user_id: str, room_id: str) -> dict[str, Any]:
    """``content`` with ``room_id`` added to ``user_id``'s direct chats. Every other
    entry is kept as it was, even one this client cannot read."""
    merged = dict(content) if isinstance(content, Mapping) else {}
    rooms = merged.get(user_id)
    rooms = [r for r in rooms if isinstance(r, str)] if isinstance(rooms, list) else []
    if room_id not in rooms:
        rooms.append(room_id)
    merged[user_id] = rooms
    return merged


def matches(name: str, query: str) -> bool:
    """Search by name: every word of ``query`` is in ``name``, ignoring case."""
    folded = name.casefold()
    return all(word in folded for word in query.casefold().split())


def filter_entries(entries: Iterable[RoomEntry], query: str) -> list[RoomEntry]:
    return [e for e in entries if matches(e.name, query)]


CREATOR_LEVEL = 2**53  # room version 12: the creators' power is above any number


def privileged_creators(room_version: str) -> bool:
    """Whether the room version gives its creators infinite power (room version 12:
    the ``m.room.create`` sender and ``additional_creators``, not in power_levels)."""
    if room_version.isdigit():
        return int(room_version) >= 12
    return room_version == "org.matrix.hydra.11"


def creators_of(create: Mapping[str, Any]) -> set[str]:
    """The creators an ``m.room.create`` event names, if its room version privileges
    them; else none."""
    content = create.get("content")
    content = content if isinstance(content, Mapping) else {}
    if not privileged_creators(str(content.get("room_version", "1"))):
        return set()
    extra = content.get("additional_creators")
    extra = [u for u in extra if isinstance(u, str)] if isinstance(extra, list) else []
    sender = create.get("sender")
    return {sender, *extra} if isinstance(sender, str) else set(extra)


def power_mark(level: int) -> str:
    """The mark for a member's power level: admin (100) or moderator (50)."""
    if level >= 100:
        return "★"
    if level >= 50:
        return "◆"
    return " "


# -- what the client knows of direct chats ----------------------------------------------


@dataclass
class DirectChats:
    """What the client knows beyond nio's room objects: the user's ``m.direct`` (from
    /sync's account data), the invites that are direct chats, display names looked up
    for people not (yet) in their room, and each room's privileged creators."""

    content: dict[str, Any] = field(default_factory=dict)  # as the server holds it
    invites: set[str] = field(default_factory=set)  # room IDs
    names: dict[str, str] = field(default_factory=dict)  # user ID -> display name
    creators: dict[str, set[str]] = field(default_factory=dict)  # room ID -> user IDs

    def update(self, response: nio.SyncResponse, own_user_id: str) -> None:
        """Take in one /sync response."""
        for event in response.account_data_events:
            if getattr(event, "type", None) == DIRECT:
                self.content = dict(getattr(event, "content", {}) or {})
        for room_id, info in response.rooms.invite.items():
            for event in info.invite_state:
                if (
                    isinstance(event, nio.InviteMemberEvent)
                    and event.state_key == own_user_id
                    and event.content.get("is_direct") is True
                ):
                    self.invites.add(room_id)
        for room_id in response.rooms.leave:  # kept on join: see accepted_invite
            self.invites.discard(room_id)
        for room_id, joined in response.rooms.join.items():
            for event in (*joined.state, *joined.timeline.events):
                if isinstance(event, nio.RoomCreateEvent):
                    self.creators[room_id] = creators_of(event.source)

    def partners(self) -> dict[str, str]:
        """Room ID -> the other person, for every room in ``m.direct``."""
        out: dict[str, str] = {}
        for user_id, rooms in parse_direct(self.content).items():
            for room_id in rooms:
                out.setdefault(room_id, user_id)
        return out

    def room_with(self, user_id: str, joined: Iterable[str]) -> str | None:
        """A joined direct chat with ``user_id``, if there is one."""
        rooms = parse_direct(self.content).get(user_id, [])
        joined = set(joined)
        return next((r for r in rooms if r in joined), None)


def person_name(room: nio.MatrixRoom, user_id: str, directs: DirectChats) -> str:
    """The other person's display name: their member event, else their profile."""
    user = room.users.get(user_id)
    if user is not None and user.display_name:
        return room.user_name(user_id) or user.display_name
    return directs.names.get(user_id) or user_id


@dataclass(frozen=True)
class Sections:
    direct: list[RoomEntry]
    rooms: list[RoomEntry]
    invites: list[RoomEntry]

    def joined(self) -> list[RoomEntry]:
        """Joined rooms in the order the list shows them."""
        return self.direct + self.rooms


def _sorted(entries: Iterable[RoomEntry]) -> list[RoomEntry]:
    return sorted(entries, key=lambda r: (r.name.casefold(), r.room_id))


def sections(client: nio.AsyncClient, directs: DirectChats) -> Sections:
    """The room list's sections: direct chats, rooms, invites; each by name."""
    partners = directs.partners()
    direct, rooms = [], []
    for room in client.rooms.values():
        partner = partners.get(room.room_id)
        name = person_name(room, partner, directs) if partner else room.display_name
        entry = RoomEntry(
            room.room_id, name, room.unread_notifications, room.unread_highlights, bool(partner)
        )
        (direct if partner else rooms).append(entry)
    invites = [
        RoomEntry(r.room_id, r.display_name, direct=r.room_id in directs.invites)
        for r in client.invited_rooms.values()
    ]
    return Sections(_sorted(direct), _sorted(rooms), _sorted(invites))


# -- client-API calls -------------------------------------------------------------------


async def _account_data(
    client: nio.AsyncClient, method: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """``GET`` or ``PUT /user/{userId}/account_data/m.direct``: (status, JSON body)."""
    path = f"/_matrix/client/v3/user/{quote(client.user_id, safe='')}/account_data/{DIRECT}"
    headers = {"Authorization": f"Bearer {client.access_token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body)
    response = await client.send(method, path, data, headers)
    async with response:
        try:
            answer = await response.json(content_type=None)
        except ValueError:
            answer = None
    return response.status, answer


def _refusal(status: int, answer: Any) -> str:
    if isinstance(answer, dict) and "errcode" in answer:
        return f"{answer['errcode']}: {answer.get('error') or 'no reason given'}"
    return f"HTTP {status}"


async def add_direct(client: nio.AsyncClient, user_id: str, room_id: str) -> dict[str, Any]:
    """Add ``room_id`` to the server's ``m.direct`` for ``user_id``; the new content.

    Reads the server's copy first, so entries another client added meanwhile are kept.
    """
    status, answer = await _account_data(client, "GET")
    if status == 200 and isinstance(answer, dict):
        current: Any = answer
    elif status == 404:
        current = {}
    else:
        raise RoomError(f"cannot read your direct chats: {_refusal(status, answer)}")
    merged = merge_direct(current, user_id, room_id)
    status, answer = await _account_data(client, "PUT", merged)
    if status != 200:
        raise RoomError(f"cannot save the direct chat: {_refusal(status, answer)}")
    return merged


@dataclass(frozen=True)
class NewRoom:
    """What the create-room dialog asks for."""

    name: str
    topic: str = ""
    alias: str = ""  # the local part: "porch" for #porch:server
    public: bool = False
    encrypted: bool = True
    invite: tuple[str, ...] = ()


def parse_invitees(text: str) -> tuple[str, ...]:
    """User IDs separated by spaces or commas. Raises RoomError on anything else."""
    users = tuple(u for u in text.replace(",", " ").split() if u)
    bad = [u for u in users if not (u.startswith("@") and ":" in u)]
    if bad:
        raise RoomError(f"not a user ID: {bad[0]} (like @someone:server)")
    return users


def encryption_state() -> dict[str, Any]:
    return {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}


async def create_room(client: nio.AsyncClient, new: NewRoom) -> str:
    """``POST /createRoom``; the new room's ID."""
    alias = new.alias.strip().lstrip("#").split(":")[0]
    response = await client.room_create(
        visibility=nio.RoomVisibility.public if new.public else nio.RoomVisibility.private,
        alias=alias or None,
        name=new.name.strip() or None,
        topic=new.topic.strip() or None,
        preset=nio.RoomPreset.public_chat if new.public else nio.RoomPreset.private_chat,
        invite=new.invite,
        initial_state=[encryption_state()] if new.encrypted else [],
    )
    if not isinstance(response, nio.RoomCreateResponse):
        raise RoomError(f"cannot create the room: {describe(response)}")
    return response.room_id


async def open_direct_chat(
    client: nio.AsyncClient, directs: DirectChats, user_id: str
) -> tuple[str, bool]:
    """The direct chat with ``user_id``: an existing one, or a new one (created with
    ``is_direct``, the ``trusted_private_chat`` preset and an invite, then added to
    ``m.direct``). Returns (room ID, whether it was created)."""
    if not (user_id.startswith("@") and ":" in user_id):
        raise RoomError(f"not a user ID: {user_id} (like @someone:server)")
    if user_id == client.user_id:
        raise RoomError("a direct chat needs someone else")
    existing = directs.room_with(user_id, client.rooms)
    if existing is not None:
        return existing, False
    profile = await client.get_profile(user_id)
    if isinstance(profile, nio.ProfileGetResponse) and profile.displayname:
        directs.names[user_id] = profile.displayname
    response = await client.room_create(
        is_direct=True,
        preset=nio.RoomPreset.trusted_private_chat,
        invite=[user_id],
        initial_state=[encryption_state()],
    )
    if not isinstance(response, nio.RoomCreateResponse):
        raise RoomError(f"cannot start a direct chat with {user_id}: {describe(response)}")
    directs.content = await add_direct(client, user_id, response.room_id)
    return response.room_id, True


async def accepted_invite(
    client: nio.AsyncClient, directs: DirectChats, room_id: str, room: nio.MatrixRoom | None
) -> None:
    """After joining ``room_id`` from an invite: if the invite had ``is_direct``, the
    room becomes a direct chat with the inviter in ``m.direct``."""
    inviter = getattr(room, "inviter", None)
    if room_id in directs.invites and isinstance(inviter, str):
        directs.content = await add_direct(client, inviter, room_id)


async def save_settings(
    client: nio.AsyncClient, room_id: str, changes: Mapping[str, str]
) -> list[str]:
    """Set the room's ``name`` and/or ``topic`` (``PUT /rooms/{roomId}/state/m.room.X``);
    what was set. Stops at the first refusal."""
    done: list[str] = []
    for what, value in changes.items():
        response = await client.room_put_state(room_id, f"m.room.{what}", {what: value})
        if not isinstance(response, nio.RoomPutStateResponse):
            raise RoomError(f"cannot set the {what}: {describe(response)}")
        done.append(what)
    return done
