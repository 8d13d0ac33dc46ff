"""DirectoryService: room aliases and the published room directory.

Spec: content/client-server-api/_index.md "Room aliases" and api/client-server/
directory.yaml (PUT/GET/DELETE /directory/room/{roomAlias}, GET
/rooms/{roomId}/aliases); list_public_rooms.yaml (GET/PUT /directory/list/room/
{roomId}, GET/POST /publicRooms); create_room.yaml (``room_alias_name``,
``visibility``); room_state.yaml (M_BAD_ALIAS for m.room.canonical_alias).

This node hosts aliases on its own server name only. Another server's alias, or its
directory, is asked of that server (``remote``: the federation queries in
node/federation/queries.py); without it those requests fail with a message that
says so.
Croft serves one user, the owner, who administers the server: the owner may
remove any alias and publish any room the server knows ("Servers may choose to
implement additional access control checks").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiosqlite

from node.directory.store import DirectoryStore
from node.errors import MatrixError, forbidden, invalid_param, not_found
from node.events.pdu import CREATE, JOIN_RULES, MEMBER, StateKey
from node.ids import InvalidId, RoomAlias
from node.rooms.creation import RoomRequest
from node.rooms.service import RoomService
from node.storage.events import EventStore

log = logging.getLogger(__name__)

CANONICAL_ALIAS = "m.room.canonical_alias"
DEFAULT_PUBLIC_ROOMS_LIMIT = 100
MAX_PUBLIC_ROOMS_LIMIT = 500

# The state a directory entry is made from (public_rooms_chunk.yaml).
_SUMMARY_KEYS: tuple[StateKey, ...] = (
    (CREATE, ""),
    ("m.room.name", ""),
    ("m.room.topic", ""),
    ("m.room.avatar", ""),
    (CANONICAL_ALIAS, ""),
    (JOIN_RULES, ""),
    ("m.room.history_visibility", ""),
    ("m.room.guest_access", ""),
)


def _check_alias_text(alias: str) -> None:
    """Beyond the grammar (appendices "Room Aliases"), refuse what no one can type or
    read back: whitespace and control characters."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in alias):
        raise invalid_param(f"Room alias {alias!r} contains whitespace or control characters")


def parse_alias(alias: str) -> RoomAlias:
    """A room alias from a request (M_INVALID_PARAM when it is not one)."""
    try:
        parsed = RoomAlias.parse(alias)
    except InvalidId as e:
        raise invalid_param(f"Invalid room alias: {e}") from None
    _check_alias_text(alias)
    return parsed


def local_alias(localpart: str, server_name: str) -> str:
    """``#localpart:server_name`` for createRoom's ``room_alias_name``."""
    if not localpart:
        raise invalid_param("room_alias_name is empty")
    if ":" in localpart or "\x00" in localpart:
        raise invalid_param("room_alias_name must be a localpart only: it cannot contain ':'")
    return str(parse_alias(f"#{localpart}:{server_name}"))


def room_in_use(alias: str) -> MatrixError:
    return MatrixError(400, "M_ROOM_IN_USE", f"Room alias {alias} is already in use")


def _str(content: Mapping[str, Any] | None, name: str) -> str | None:
    value = content.get(name) if content is not None else None
    return value if isinstance(value, str) and value else None


def plain_topic(content: Mapping[str, Any]) -> str | None:
    """The text/plain topic: the m.topic representation if there is one, else
    ``topic`` (m.room.topic; a representation without a mimetype is text/plain)."""
    blocks = content.get("m.topic")
    texts = blocks.get("m.text") if isinstance(blocks, Mapping) else None
    if isinstance(texts, list):
        for block in texts:
            if (
                isinstance(block, Mapping)
                and block.get("mimetype", "text/plain") == "text/plain"
                and isinstance(block.get("body"), str)
            ):
                return str(block["body"])
    return _str(content, "topic")


def room_chunk(
    room_id: str, state: Mapping[StateKey, Mapping[str, Any]], joined_members: int
) -> dict[str, Any]:
    """A PublishedRoomsChunk from the room's current state contents (pure)."""
    chunk: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": joined_members,
        "world_readable": _str(state.get(("m.room.history_visibility", "")), "history_visibility")
        == "world_readable",
        "guest_can_join": _str(state.get(("m.room.guest_access", "")), "guest_access")
        == "can_join",
    }
    topic = state.get(("m.room.topic", ""))
    optional = {
        "name": _str(state.get(("m.room.name", "")), "name"),
        "topic": plain_topic(topic) if topic is not None else None,
        "avatar_url": _str(state.get(("m.room.avatar", "")), "url"),
        "canonical_alias": _str(state.get((CANONICAL_ALIAS, "")), "alias"),
        "join_rule": _str(state.get((JOIN_RULES, "")), "join_rule"),
        "room_type": _str(state.get((CREATE, "")), "type"),
    }
    chunk.update({k: v for k, v in optional.items() if v is not None})
    return chunk


def matches_filter(
    chunk: Mapping[str, Any],
    search_term: str | None,
    room_types: Sequence[str | None] | None,
) -> bool:
    """The POST /publicRooms filter: ``generic_search_term`` (case-insensitive, in the
    name, topic, canonical alias or room ID) and ``room_types`` (None stands for rooms
    without a type)."""
    if room_types is not None and chunk.get("room_type") not in room_types:
        return False
    if search_term:
        needle = search_term.casefold()
        fields = ("name", "topic", "canonical_alias", "room_id")
        if not any(needle in str(chunk.get(f, "")).casefold() for f in fields):
            return False
    return True


@dataclass(frozen=True)
class PublicRoomsQuery:
    limit: int = DEFAULT_PUBLIC_ROOMS_LIMIT
    since: str | None = None
    search_term: str | None = None
    room_types: tuple[str | None, ...] | None = None


class RemoteDirectory(Protocol):
    """Other servers' aliases and directories (node/federation/queries.py)."""

    async def room_alias(self, alias: str) -> tuple[str, list[str]]: ...

    async def public_rooms(self, server: str, query: PublicRoomsQuery) -> dict[str, Any]: ...


class DirectoryService:
    def __init__(
        self, store: DirectoryStore, events: EventStore, rooms: RoomService, server_name: str
    ) -> None:
        self.store = store
        self.events = events
        self.rooms = rooms
        self.server_name = server_name
        # Set once federation is assembled (node/app.py).
        self.remote: RemoteDirectory | None = None

    def _local(self, alias: str, action: str) -> RoomAlias:
        parsed = parse_alias(alias)
        if parsed.domain != self.server_name:
            raise invalid_param(
                f"Cannot {action} {alias}: this server only hosts aliases ending in"
                f" ':{self.server_name}'"
            )
        return parsed

    async def _room_known(self, room_id: str) -> None:
        if await self.events.get_room_version(room_id) is None:
            raise not_found(f"Room {room_id} not found")

    async def _membership(self, user_id: str, room_id: str) -> str | None:
        ids = await self.events.get_current_state_ids(room_id)
        member_id = ids.get((MEMBER, user_id))
        member = await self.events.get_event(member_id) if member_id else None
        return member.event.membership if member else None

    # -- aliases ---------------------------------------------------------------------------

    async def resolve_alias(self, alias: str) -> str | None:
        """The room ID an alias points to; None when this server hosts no such alias.
        Another server's alias is asked of it (:meth:`resolve_remote_alias`).

        Raises MatrixError: M_INVALID_PARAM for a malformed alias; for another
        server's alias 404 M_NOT_FOUND (unknown there, or no federation) or 502."""
        parsed = parse_alias(alias)
        if parsed.domain != self.server_name:
            return (await self.resolve_remote_alias(alias))[0]
        return await self.store.get_room_id(alias)

    async def resolve_remote_alias(self, alias: str) -> tuple[str, list[str]]:
        """Another server's alias: (room ID, servers likely in the room), asked of the
        alias's server (GET /_matrix/federation/v1/query/directory)."""
        parsed = parse_alias(alias)
        if self.remote is None:
            raise not_found(
                f"Room alias {alias} belongs to {parsed.domain}; resolving another server's"
                " aliases needs federation, which is not available"
            )
        return await self.remote.room_alias(str(parsed))

    async def lookup(self, alias: str) -> dict[str, Any]:
        """GET /directory/room/{roomAlias}: the room ID and servers that know it."""
        if parse_alias(alias).domain != self.server_name:
            remote_room, remote_servers = await self.resolve_remote_alias(alias)
            return {"room_id": remote_room, "servers": remote_servers}
        room_id = await self.resolve_alias(alias)
        if room_id is None:
            raise not_found(f"Room alias {alias} not found")
        servers = [self.server_name]
        ids = await self.events.get_current_state_ids(room_id)
        members = await self.events.get_events(eid for (t, _), eid in ids.items() if t == MEMBER)
        for stored in members.values():
            if stored.event.membership == "join" and stored.event.state_key:
                server = stored.event.state_key.partition(":")[2]
                if server and server not in servers:
                    servers.append(server)
        return {"room_id": room_id, "servers": servers}

    async def create_alias(self, user_id: str, alias: str, room_id: str) -> None:
        """PUT /directory/room/{roomAlias}: 409 M_UNKNOWN if the alias exists."""
        self._local(alias, "create")
        await self._room_known(room_id)
        if await self._membership(user_id, room_id) != "join":
            raise forbidden(f"You must be in {room_id} to give it an alias")
        if not await self.store.put_alias(alias, room_id, user_id):
            raise MatrixError(409, "M_UNKNOWN", f"Room alias {alias} already exists")

    async def delete_alias(self, user_id: str, alias: str) -> None:
        """DELETE /directory/room/{roomAlias}; the alias also leaves the room's
        m.room.canonical_alias when the user may change that (directory.yaml note)."""
        self._local(alias, "delete")
        room_id = await self.store.get_room_id(alias)
        if room_id is None or not await self.store.delete_alias(alias):
            raise not_found(f"Room alias {alias} not found")
        await self._drop_from_canonical_alias(user_id, room_id, alias)

    async def _drop_from_canonical_alias(self, user_id: str, room_id: str, alias: str) -> None:
        ids = await self.events.get_current_state_ids(room_id)
        event_id = ids.get((CANONICAL_ALIAS, ""))
        stored = await self.events.get_event(event_id) if event_id else None
        if stored is None:
            return
        content = dict(stored.event.content)
        alt = content.get("alt_aliases")
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if not changed:
            return
        try:
            await self.rooms.send(user_id, room_id, CANONICAL_ALIAS, content, state_key="")
        except MatrixError as e:
            log.info("alias %s deleted; %s keeps it in its canonical alias: %s", alias, room_id, e)

    async def local_aliases(self, user_id: str, room_id: str) -> list[str]:
        """GET /rooms/{roomId}/aliases: for members, or anyone if world_readable."""
        await self._room_known(room_id)
        if await self._membership(user_id, room_id) != "join":
            ids = await self.events.get_current_state_ids(room_id)
            hv_id = ids.get(("m.room.history_visibility", ""))
            hv = await self.events.get_event(hv_id) if hv_id else None
            if hv is None or hv.event.content.get("history_visibility") != "world_readable":
                raise forbidden("You are not a member of the room")
        return await self.store.aliases_of(room_id)

    async def check_canonical_alias(self, room_id: str, content: Mapping[str, Any]) -> None:
        """Before an m.room.canonical_alias is sent: its aliases must be valid
        (M_INVALID_PARAM) and those this server hosts, if new, must point to the room
        (M_BAD_ALIAS; room_state.yaml). Another server's alias cannot be checked
        without federation and is let through."""
        alias = content.get("alias")
        alt = content.get("alt_aliases", [])
        if alias is not None and not isinstance(alias, str):
            raise invalid_param("'alias' must be a string")
        if not isinstance(alt, list) or not all(isinstance(a, str) for a in alt):
            raise invalid_param("'alt_aliases' must be a list of strings")
        ids = await self.events.get_current_state_ids(room_id)
        old_id = ids.get((CANONICAL_ALIAS, ""))
        old = await self.events.get_event(old_id) if old_id else None
        known: set[str] = set()
        if old is not None:
            old_alt = old.event.content.get("alt_aliases")
            known = {a for a in (old.event.content.get("alias"), *(old_alt or ())) if a}
        for candidate in ([alias] if alias else []) + alt:
            parsed = parse_alias(candidate)
            if candidate in known or parsed.domain != self.server_name:
                continue
            if await self.store.get_room_id(candidate) != room_id:
                raise MatrixError(
                    400, "M_BAD_ALIAS", f"The alias {candidate!r} does not point to this room"
                )

    # -- creating rooms with an alias / published ------------------------------------

    async def create_room(self, req: RoomRequest, *, publish: bool) -> str:
        """POST /createRoom: the room, its alias (``req.canonical_alias``) and its
        directory entry are stored in one transaction; M_ROOM_IN_USE if the alias is
        taken."""
        alias = req.canonical_alias
        if alias is not None:
            self._local(alias, "create")
            if await self.store.get_room_id(alias) is not None:
                raise room_in_use(alias)
        if alias is None and not publish:
            return await self.rooms.create_room(req)

        async def also(conn: aiosqlite.Connection, room_id: str) -> None:
            if alias is not None and not await DirectoryStore.put_alias_txn(
                conn, alias, room_id, req.creator
            ):
                raise room_in_use(alias)  # taken while the room was being built
            if publish:
                await DirectoryStore.set_published_txn(conn, room_id, True)

        return await self.rooms.create_room(req, also_txn=also)

    # -- the published room directory ---------------------------------------------------

    async def visibility(self, room_id: str) -> str:
        await self._room_known(room_id)
        return "public" if await self.store.is_published(room_id) else "private"

    async def set_visibility(self, user_id: str, room_id: str, visibility: str) -> None:
        await self._room_known(room_id)
        await self.store.set_published(room_id, visibility == "public")

    async def public_rooms(self, query: PublicRoomsQuery, server: str | None) -> dict[str, Any]:
        """GET/POST /publicRooms for this server: largest rooms first, then by room
        ID; ``since`` tokens are offsets (``o<n>``)."""
        if server is not None and server != self.server_name:
            if self.remote is None:
                raise MatrixError(
                    400,
                    "M_UNKNOWN",
                    f"Listing the room directory of {server} needs federation,"
                    " which is not available",
                )
            return await self.remote.public_rooms(server, query)
        offset = 0
        if query.since is not None:
            if not (query.since.startswith("o") and query.since[1:].isdigit()):
                raise invalid_param(f"Invalid 'since' token {query.since[:40]!r}")
            offset = int(query.since[1:])
        room_ids = await self.store.published_rooms()
        counts = await self.store.joined_member_counts(room_ids)
        chunks = []
        for room_id in room_ids:
            chunk = room_chunk(room_id, await self._summary_state(room_id), counts.get(room_id, 0))
            if matches_filter(chunk, query.search_term, query.room_types):
                chunks.append(chunk)
        chunks.sort(key=lambda c: (-c["num_joined_members"], c["room_id"]))
        page = chunks[offset : offset + query.limit]
        body: dict[str, Any] = {"chunk": page, "total_room_count_estimate": len(chunks)}
        if offset + query.limit < len(chunks):
            body["next_batch"] = f"o{offset + query.limit}"
        if offset > 0:
            body["prev_batch"] = f"o{max(0, offset - query.limit)}"
        return body

    async def _summary_state(self, room_id: str) -> dict[StateKey, Mapping[str, Any]]:
        ids = await self.events.get_current_state_ids(room_id)
        wanted = {key: ids[key] for key in _SUMMARY_KEYS if key in ids}
        found = await self.events.get_events(wanted.values())
        return {k: found[eid].event.content for k, eid in wanted.items() if eid in found}
