"""Inbound membership endpoints: other servers' users joining, leaving and knocking on
rooms this server is in, and invites of our user to rooms elsewhere.

Spec: content/server-server-api.md "Joining Rooms", "Knocking upon a room", "Leaving
Rooms (Rejecting Invites)", "Inviting to a room"; api/server-server/joins-v2.yaml,
knocks.yaml, leaving-v2.yaml, invites-v2.yaml.

``make_*`` answers an unsigned event template built on the room's current head;
``send_*`` runs the signed event through the receive checks (node/federation/pdus.py)
like any PDU, then sends it on to the other servers in the room (the joining server
does not know them yet). ``send_join`` answers with the state before the join and
its auth chain, members left out when the caller asks (``omit_members``).

Every endpoint here refuses, with 403 ``M_FORBIDDEN``, a server that the room's
current server ACL denies (content/server-server-api.md "Server Access Control Lists
(ACLs)"); an invite to a room this server does not hold has no ACL to check.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from node.appkeys import NODE
from node.errors import MatrixError, forbidden, json_response, not_found
from node.events.pdu import CREATE, MEMBER, Event, StateKey
from node.events.room_versions import KNOWN_ROOM_VERSIONS, room_version
from node.federation.acl import SERVER_ACL, server_allowed
from node.federation.auth import CONTENT
from node.federation.common import ORIGIN
from node.federation.dag_store import DagStore
from node.federation.pdu_errors import PduDropped
from node.rooms.auth import AuthError, auth_types_for_event, check_state_dependent_auth_rules
from node.rooms.builder import MAX_PREV_EVENTS

routes = web.RouteTableDef()

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


def _bad_json(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


async def _check_acl(node: Any, room_id: str, origin: str) -> None:
    """403 when the room's current server ACL denies ``origin``."""
    if not server_allowed(
        origin, await DagStore(node.db).current_state_content(room_id, SERVER_ACL)
    ):
        raise forbidden(f"Server {origin} is denied by the server ACL of room {room_id}")


async def _template(request: web.Request, membership: str) -> web.Response:
    node = request.app[NODE]
    origin: str = request[ORIGIN]
    room_id = request.match_info["room_id"]
    user_id = request.match_info["user_id"]
    if _server_of(user_id) != origin:
        raise forbidden(f"{origin} may not make a {membership} event for {user_id}")
    version = await node.events.get_room_version(room_id)
    if version is None or not await node.rooms.is_resident(room_id):
        raise not_found(f"Room {room_id} is not known to this server")
    await _check_acl(node, room_id, origin)
    if membership != "leave":
        supported = request.query.getall("ver", []) or ["1"]
        if version.identifier not in supported:
            raise MatrixError(
                400,
                "M_INCOMPATIBLE_ROOM_VERSION",
                f"Room {room_id} has version {version.identifier}, which you do not support",
                room_version=version.identifier,
            )
    async with node.rooms.lock(room_id):
        head = await node.rooms.head(room_id)
        if head is None:
            raise not_found(f"Room {room_id} is not known to this server")
        pdu: dict[str, Any] = {
            "type": MEMBER,
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": {"membership": membership},
            "origin_server_ts": int(time.time() * 1000),
        }
        if not version.implicit_room_creator:
            pdu["origin"] = origin
        prev = head.extremities[:MAX_PREV_EVENTS]
        pdu["prev_events"] = [eid for eid, _ in prev]
        pdu["depth"] = min(max((d for _, d in prev), default=0) + 1, 2**53 - 1)
        if membership == "join":
            _authorise_restricted_join(node, head.state, pdu)
        pdu["auth_events"] = sorted(
            head.state[key].event_id
            for key in auth_types_for_event(version, pdu)
            if key in head.state
        )
        provisional = Event("$template", version, pdu)
        try:
            check_state_dependent_auth_rules(provisional, head.state)
        except AuthError as e:
            raise forbidden(f"You may not {membership} this room: {e}") from None
    return json_response({"event": pdu, "room_version": version.identifier})


def _authorise_restricted_join(node: Any, state: dict[StateKey, Event], pdu: dict) -> None:
    """Restricted rooms: a joining user who is not invited needs a resident user who may
    invite to authorise the join (``join_authorised_via_users_server``). This server has
    one user, its owner; whether the joining user meets the allow conditions is for
    the auth rules to decide."""
    rules = state.get(("m.room.join_rules", ""))
    rule = rules.content.get("join_rule") if rules is not None else None
    if rule not in ("restricted", "knock_restricted"):
        return
    current = state.get((MEMBER, pdu["sender"]))
    if current is not None and current.membership in ("invite", "join"):
        return
    owner = _resident_user(node, state)
    if owner is not None:
        pdu["content"]["join_authorised_via_users_server"] = owner


def _resident_user(node: Any, state: dict[StateKey, Event]) -> str | None:
    ours = ":" + node.config.server_name
    for (etype, skey), ev in state.items():
        if etype == MEMBER and skey.endswith(ours) and ev.membership == "join":
            return skey
    return None


async def _receive_membership(request: web.Request, membership: str) -> tuple[Any, Event]:
    """Check a signed membership event sent to send_join/leave/knock and store it."""
    node = request.app[NODE]
    origin: str = request[ORIGIN]
    room_id = request.match_info["room_id"]
    event_id = request.match_info["event_id"]
    raw = request.get(CONTENT)
    if not isinstance(raw, dict):
        raise _bad_json("The body must be the signed event")
    version = await node.events.get_room_version(room_id)
    if version is None or not await node.rooms.is_resident(room_id):
        raise not_found(f"Room {room_id} is not known to this server")
    await _check_acl(node, room_id, origin)
    if membership == "join":
        _sign_if_authorised_by_us(node, raw, version)
    try:
        event = await node.pdu_receiver.check_event(raw, version)
    except PduDropped as e:
        raise _bad_json(str(e)) from None
    if event.event_id != event_id:
        raise _bad_json(f"The event's ID is {event.event_id}, not {event_id}")
    if event.room_id != room_id or event.type != MEMBER or event.membership != membership:
        raise _bad_json(f"Not an m.room.member {membership} event in {room_id}")
    if event.state_key != event.sender or _server_of(event.sender) != origin:
        raise forbidden(f"{origin} may not send this {membership} event")
    async with node.rooms.lock(room_id):
        await node.rooms.drain(room_id)
        try:
            received = await node.pdu_receiver.process_locked(origin, event)
        except PduDropped as e:
            raise _bad_json(str(e)) from None
    if received.outcome == "rejected":
        raise forbidden(f"The {membership} event is not allowed: {received.reason}")
    if received.outcome == "soft_failed":
        raise forbidden(f"The {membership} event is not allowed by the room's current state")
    await _send_on(node, event, origin)
    return raw, event


def _sign_if_authorised_by_us(node: Any, raw: dict, version: Any) -> None:
    """A restricted join naming our user as authoriser must carry our signature too."""
    content = raw.get("content")
    via = content.get("join_authorised_via_users_server") if isinstance(content, dict) else None
    if isinstance(via, str) and _server_of(via) == node.config.server_name:
        from node.events.signing import sign_event

        key = node.server_key
        signed = sign_event(raw, key.server_name, key.signing_key, version)
        raw["signatures"] = signed["signatures"]


async def _send_on(node: Any, event: Event, origin: str) -> None:
    """The other servers in the room learn of the event from us."""
    sender = getattr(node, "federation_sender", None)
    if sender is None:
        return
    servers = await node.events.get_joined_servers(event.room_id)
    servers.discard(origin)
    servers.discard(node.config.server_name)
    if servers:
        await sender.send_pdu(event.event_id, servers)


async def _state_and_chain(
    node: Any, event: Event, omit_members: bool
) -> tuple[list[Any], list[Any], list[str]]:
    """The state before ``event`` and its auth chain, as PDUs; with ``omit_members``,
    member events other than those the join's auth needs are left out."""
    before = await node.states.state_before(event.event_id) or {}
    keep: set[str] = set()
    if omit_members:
        keep = {
            eid
            for (etype, _), eid in before.items()
            if etype != MEMBER or eid in set(event.auth_event_ids)
        }
    state_ids = [eid for eid in before.values() if not omit_members or eid in keep]
    dag = DagStore(node.db)
    chain_ids = await dag.auth_chain_ids(
        event.room_id, event.room_version, [*state_ids, *event.auth_event_ids]
    )
    in_state = set(state_ids)
    chain_ids = [c for c in chain_ids if c not in in_state]
    stored = await dag.get_pdus([*state_ids, *chain_ids])
    state = [dict(stored[i].pdu) for i in state_ids if i in stored]
    chain = [dict(stored[i].pdu) for i in chain_ids if i in stored]
    servers = sorted(await node.events.get_joined_servers(event.room_id))
    return state, chain, servers


# -- routes -----------------------------------------------------------------------------


@routes.get(V1 + "/make_join/{room_id}/{user_id}")
async def make_join(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/make_join/{roomId}/{userId}"""
    return await _template(request, "join")


@routes.get(V1 + "/make_leave/{room_id}/{user_id}")
async def make_leave(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/make_leave/{roomId}/{userId}"""
    return await _template(request, "leave")


@routes.get(V1 + "/make_knock/{room_id}/{user_id}")
async def make_knock(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/make_knock/{roomId}/{userId}"""
    return await _template(request, "knock")


@routes.put(V2 + "/send_join/{room_id}/{event_id}")
async def send_join(request: web.Request) -> web.Response:
    """PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}"""
    node = request.app[NODE]
    raw, event = await _receive_membership(request, "join")
    omit = request.query.get("omit_members", "false").lower() == "true"
    state, chain, servers = await _state_and_chain(node, event, omit)
    body: dict[str, Any] = {
        "origin": node.config.server_name,
        "state": state,
        "auth_chain": chain,
        "event": raw,
        "members_omitted": omit,
    }
    if omit:
        body["servers_in_room"] = servers
    return json_response(body)


@routes.put(V2 + "/send_leave/{room_id}/{event_id}")
async def send_leave(request: web.Request) -> web.Response:
    """PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}"""
    await _receive_membership(request, "leave")
    return json_response({})


@routes.put(V1 + "/send_knock/{room_id}/{event_id}")
async def send_knock(request: web.Request) -> web.Response:
    """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}"""
    from node.federation.joins import room_state_events  # loaded with the receiver

    node = request.app[NODE]
    _, event = await _receive_membership(request, "knock")
    head = await node.rooms.head(event.room_id)
    room_state = room_state_events(head.state) if head is not None else []
    return json_response({"knock_room_state": room_state})


@routes.put(V2 + "/invite/{room_id}/{event_id}")
async def invite(request: web.Request) -> web.Response:
    """PUT /_matrix/federation/v2/invite/{roomId}/{eventId}"""
    node = request.app[NODE]
    origin: str = request[ORIGIN]
    body = request.get(CONTENT)
    if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
        raise _bad_json("The body must hold the invite event")
    version_id = body.get("room_version")
    if not isinstance(version_id, str) or version_id not in KNOWN_ROOM_VERSIONS:
        raise MatrixError(
            400,
            "M_INCOMPATIBLE_ROOM_VERSION",
            f"Room version {version_id!r} is not supported by this server",
            room_version=str(version_id),
        )
    version = room_version(version_id)
    raw = body["event"]
    room_id = request.match_info["room_id"]
    if raw.get("room_id") != room_id:
        raise _bad_json("The event is not in the room of the path")
    if raw.get("type") == CREATE:
        raise _bad_json("Not an invite event")
    await _check_acl(node, room_id, origin)
    try:
        signed = await node.remote_rooms.on_invite(
            origin, raw, version, body.get("invite_room_state")
        )
    except PduDropped as e:
        raise _bad_json(str(e)) from None
    return json_response({"event": signed})


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
