"""Creating rooms, sending events, reading state and single events.

Spec: api/client-server/create_room.yaml (POST /createRoom), room_send.yaml
(PUT /rooms/{roomId}/send/{eventType}/{txnId}), room_state.yaml
(PUT /rooms/{roomId}/state/{eventType}/{stateKey}), rooms.yaml (GET .../state,
.../state/{eventType}/{stateKey}, .../event/{eventId}), list_joined_rooms.yaml.

Reading a room follows its history visibility (node/rooms/visibility.py): a user who
is not in the room, never was and may not peek gets 403; an event they may not see
is 404 ("The event was not found or you do not have permission to read this
event"). A user who left reads the state as it was when they left (rooms.yaml).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.directory.service import local_alias
from node.errors import MatrixError, bad_json, forbidden, invalid_param, json_response, not_found
from node.events.client_format import to_client_event
from node.events.pdu import MEMBER, StateKey
from node.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS
from node.ids import InvalidId, RoomID, UserID
from node.relations.aggregations import relates_to
from node.rooms.creation import PRESETS, PlannedEvent, RoomRequest
from node.rooms.visibility import Access, RoomHistory
from node.storage.events import StoredEvent, TxnKey
from node.storage.visibility import VisibilityStore
from node.sync.service import add_transaction_ids

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def room_id_param(request: web.Request) -> str:
    raw = request.match_info["room_id"]
    try:
        RoomID.parse(raw)
    except InvalidId as e:
        raise invalid_param(f"Invalid room ID: {e}") from None
    return raw


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"'{name}' must be a string")
    return value


def _opt_obj(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise bad_json(f"'{name}' must be an object")
    return value


def parse_create_room(body: dict[str, Any], creator: str) -> RoomRequest:
    visibility = _opt_str(body, "visibility") or "private"
    if visibility not in ("public", "private"):
        raise bad_json("'visibility' must be 'public' or 'private'")
    preset = _opt_str(body, "preset") or (
        "public_chat" if visibility == "public" else "private_chat"
    )
    if preset not in PRESETS:
        raise bad_json(f"Unknown preset {preset!r}")
    version_id = body.get("room_version", DEFAULT_ROOM_VERSION.identifier)
    if version_id not in KNOWN_ROOM_VERSIONS:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version_id!r} is not supported"
        )
    alias_name = _opt_str(body, "room_alias_name")
    canonical_alias = None
    if alias_name is not None:  # the room's alias on this server (node/directory)
        canonical_alias = local_alias(alias_name, UserID.parse(creator).domain)
    invite = body.get("invite") or []
    if not isinstance(invite, list) or not all(isinstance(u, str) for u in invite):
        raise bad_json("'invite' must be a list of user IDs")
    for user_id in invite:
        try:
            UserID.parse(user_id)
        except InvalidId as e:
            raise invalid_param(f"Invalid user ID in 'invite': {e}") from None
    initial_state = []
    raw_state = body.get("initial_state") or []
    if not isinstance(raw_state, list):
        raise bad_json("'initial_state' must be a list")
    for item in raw_state:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise bad_json("each initial_state entry needs a string 'type'")
        state_key = item.get("state_key", "")
        content = item.get("content")
        if not isinstance(state_key, str) or not isinstance(content, dict):
            raise bad_json("initial_state entries need a string 'state_key' and object 'content'")
        if item["type"] in ("m.room.create", MEMBER):
            raise bad_json(f"{item['type']} cannot be given in initial_state")
        initial_state.append(PlannedEvent(item["type"], state_key, content))
    is_direct = body.get("is_direct", False)
    if not isinstance(is_direct, bool):
        raise bad_json("'is_direct' must be a boolean")
    return RoomRequest(
        creator=creator,
        room_version=KNOWN_ROOM_VERSIONS[version_id],
        preset=preset,
        name=_opt_str(body, "name"),
        topic=_opt_str(body, "topic"),
        creation_content=_opt_obj(body, "creation_content") or {},
        initial_state=initial_state,
        power_level_content_override=_opt_obj(body, "power_level_content_override"),
        invite=invite,
        is_direct=is_direct,
        canonical_alias=canonical_alias,
    )


@routes.post(f"{V3}/createRoom")
@authenticated
async def create_room(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/createRoom"""
    body = await json_object(request)
    req = parse_create_room(body, requester.user_id)
    profile = await request.app[NODE].profiles.member_fields(requester.user_id)
    req = dataclasses.replace(req, creator_profile=profile)
    # The directory stores the alias and the directory entry with the room.
    node = request.app[NODE]
    room_id = await node.directory.create_room(req, publish=body.get("visibility") == "public")
    # Users on other servers: an invite each, countersigned by their server. A server
    # that cannot be reached does not undo the room; the invite can be sent again.
    ours = ":" + node.config.server_name
    for invitee in dict.fromkeys(req.invite):
        if invitee.endswith(ours):
            continue
        content = {"is_direct": True} if req.is_direct else None
        try:
            await node.rooms.set_membership(
                requester.user_id, room_id, invitee, "invite", content=content
            )
        except MatrixError as e:
            log.warning("createRoom %s: could not invite %s: %s", room_id, invitee, e)
    return json_response({"room_id": room_id})


@routes.put(V3 + "/rooms/{room_id}/send/{event_type}/{txn_id}")
@authenticated
async def send_event(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"""
    room_id = room_id_param(request)
    content = await json_object(request, allow_empty=False)
    # Spec: a transaction ID is scoped to the device and the request path.
    txn = TxnKey(requester.user_id, requester.device_id, request.path)
    node = request.app[NODE]
    # A relation may be refused; a retry of one that was accepted must not be (it would
    # now look like a duplicate annotation), so look the transaction ID up first.
    if relates_to(content) is not None and await node.events.get_txn_event_id(txn) is None:
        await node.relations.check_new_event(
            room_id, requester.user_id, request.match_info["event_type"], content
        )
    event_id = await request.app[NODE].rooms.send(
        requester.user_id, room_id, request.match_info["event_type"], content, txn=txn
    )
    return json_response({"event_id": event_id})


@routes.put(V3 + "/rooms/{room_id}/state/{event_type}")
@routes.put(V3 + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
@authenticated
async def put_state(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
    room_id = room_id_param(request)
    content = await json_object(request, allow_empty=True)
    state_key = request.match_info.get("state_key", "")
    if request.match_info["event_type"] == "m.room.canonical_alias" and state_key == "":
        await request.app[NODE].directory.check_canonical_alias(room_id, content)
    event_id = await request.app[NODE].rooms.send(
        requester.user_id,
        room_id,
        request.match_info["event_type"],
        content,
        state_key=state_key,
    )
    return json_response({"event_id": event_id})


async def joined_state(
    request: web.Request, requester: Requester, room_id: str
) -> dict[tuple[str, str], str]:
    events = request.app[NODE].events
    ids = await events.get_current_state_ids(room_id)
    member_id = ids.get((MEMBER, requester.user_id))
    member = await events.get_event(member_id) if member_id else None
    if member is None or member.event.membership != "join":
        raise forbidden(f"{requester.user_id} is not in room {room_id}")
    return ids


async def readable_history(request: web.Request, requester: Requester, room_id: str) -> RoomHistory:
    """The requester's view of the room's history (node/rooms/visibility.py); 403 if
    they may not read the room at all."""
    history = await VisibilityStore(request.app[NODE].db).history(room_id, requester.user_id)
    if not history.may_read:
        raise forbidden(f"{requester.user_id} is not in room {room_id} and may not read it")
    return history


def visible_events(history: RoomHistory, events: Iterable[StoredEvent]) -> list[StoredEvent]:
    """The events of ``events`` the user of ``history`` may see, in order."""
    return [s for s in events if history.visible(s.event, s.stream_ordering)]


async def readable_state(
    request: web.Request, room_id: str, history: RoomHistory
) -> dict[StateKey, str]:
    """The state the user reads: the current state, or for a user who left the state
    just after their leave ("the state of the room when they left")."""
    node = request.app[NODE]
    left_at = history.left_at
    if history.access is Access.DEPARTED and left_at is not None:
        return await node.context.state_ids_at(room_id, left_at)
    return await node.events.get_current_state_ids(room_id)


async def visible_event(
    request: web.Request, history: RoomHistory, room_id: str, event_id: str
) -> StoredEvent:
    """The event ``event_id`` of ``room_id`` if the user may see it (one that left the
    history cache is fetched again from the servers in the room: node/history); 404
    otherwise."""
    node = request.app[NODE]
    stored = await node.events.get_event(event_id)
    if stored is None and await node.history.fetch_again(room_id, event_id):
        stored = await node.events.get_event(event_id)
    if (
        stored is None
        or stored.event.room_id != room_id
        or stored.event.rejected
        or not history.visible(stored.event, stored.stream_ordering)
    ):
        raise not_found("Event not found.")
    return stored


@routes.get(V3 + "/rooms/{room_id}/state")
@authenticated
async def get_state(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/rooms/{roomId}/state"""
    room_id = room_id_param(request)
    history = await readable_history(request, requester, room_id)
    ids = await readable_state(request, room_id, history)
    stored = await request.app[NODE].events.get_events(ids.values())
    return json_response([to_client_event(s.event) for s in stored.values()])


@routes.get(V3 + "/rooms/{room_id}/state/{event_type}")
@routes.get(V3 + "/rooms/{room_id}/state/{event_type}/{state_key:.*}")
@authenticated
async def get_state_event(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
    room_id = room_id_param(request)
    history = await readable_history(request, requester, room_id)
    ids = await readable_state(request, room_id, history)
    key = (request.match_info["event_type"], request.match_info.get("state_key", ""))
    event_id = ids.get(key)
    stored = await request.app[NODE].events.get_event(event_id) if event_id else None
    if stored is None:
        raise not_found("Event not found.")
    if request.query.get("format") == "event":
        return json_response(to_client_event(stored.event))
    return json_response(stored.event.content)


@routes.get(V3 + "/rooms/{room_id}/event/{event_id}")
@authenticated
async def get_event(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}"""
    room_id = room_id_param(request)
    history = await readable_history(request, requester, room_id)
    stored = await visible_event(request, history, room_id, request.match_info["event_id"])
    out = to_client_event(stored.event)
    if stored.event.sender == requester.user_id:
        await add_transaction_ids(
            request.app[NODE].events,
            requester.user_id,
            requester.device_id,
            [(stored.event.event_id, out["unsigned"])],
        )
    await request.app[NODE].relations.bundle(
        [(stored.event, out)], requester.user_id, history.upper_bound()
    )
    return json_response(out)


@routes.get(V3 + "/joined_rooms")
@authenticated
async def joined_rooms(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/joined_rooms"""
    rooms = await request.app[NODE].events.get_rooms_with_member(requester.user_id, "join")
    return json_response({"joined_rooms": rooms})
