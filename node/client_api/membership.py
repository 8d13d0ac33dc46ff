"""Room membership and redaction endpoints.

Spec: api/client-server/joining.yaml (POST /rooms/{roomId}/join, /join/{roomIdOrAlias}),
leaving.yaml (/leave, /forget), kicking.yaml, banning.yaml (/ban, /unban),
inviting.yaml (/invite), knocking.yaml (/knock/{roomIdOrAlias}),
redaction.yaml (PUT /rooms/{roomId}/redact/{eventId}/{txnId}).
The auth rules decide what is allowed; a refusal is 403 M_FORBIDDEN naming the rule.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object, string_field
from node.client_api.rooms import room_id_param
from node.errors import MatrixError, bad_json, forbidden, invalid_param, json_response, not_found
from node.events.pdu import MEMBER, REDACTION
from node.ids import InvalidId, RoomAlias, RoomID, UserID
from node.storage.events import TxnKey

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def _user_param(body: dict[str, Any]) -> str:
    user_id = string_field(body, "user_id")
    assert user_id is not None
    try:
        UserID.parse(user_id)
    except InvalidId as e:
        raise invalid_param(f"Invalid user ID: {e}") from None
    return user_id


async def _profile_content(request: web.Request, user_id: str) -> dict[str, Any]:
    """displayname and avatar_url for the user's own member event."""
    return await request.app[NODE].profiles.member_fields(user_id)


async def _resolve_room(request: web.Request, room_id_or_alias: str) -> tuple[str, list[str]]:
    """The room ID, and servers known to be in it (an alias's answer)."""
    if room_id_or_alias.startswith("#"):
        try:
            alias = RoomAlias.parse(room_id_or_alias)
        except InvalidId as e:
            raise invalid_param(f"Invalid room alias: {e}") from None
        node = request.app[NODE]
        if str(alias.server_name) != node.config.server_name:
            resolve_remote = getattr(node.directory, "resolve_remote_alias", None)
            if resolve_remote is not None:
                found = await resolve_remote(room_id_or_alias)
                if found is not None:
                    remote_id, servers = found
                    return str(remote_id), list(servers)
            raise not_found(f"Room alias {room_id_or_alias} not found")
        room_id = await node.directory.resolve_alias(room_id_or_alias)
        if room_id is None:
            raise not_found(f"Room alias {room_id_or_alias} not found")
        return str(room_id), []
    try:
        RoomID.parse(room_id_or_alias)
    except InvalidId as e:
        raise invalid_param(f"Invalid room ID or alias: {e}") from None
    return room_id_or_alias, []


def _via(request: web.Request) -> list[str]:
    """Servers to join or knock through: ``via`` (v1.12+) and ``server_name`` (older)."""
    return [*request.query.getall("via", []), *request.query.getall("server_name", [])]


async def _join(
    request: web.Request, requester: Requester, room_id: str, servers: list[str]
) -> web.Response:
    body = await json_object(request, allow_empty=True)
    reason = string_field(body, "reason", required=False)
    content = await _profile_content(request, requester.user_id)
    await request.app[NODE].rooms.set_membership(
        requester.user_id,
        room_id,
        requester.user_id,
        "join",
        reason=reason,
        content=content,
        servers=servers,
    )
    return json_response({"room_id": room_id})


@routes.post(V3 + "/rooms/{room_id}/join")
@authenticated
async def join_room_id(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/join"""
    return await _join(request, requester, room_id_param(request), [])


@routes.post(V3 + "/join/{room_id_or_alias}")
@authenticated
async def join(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/join/{roomIdOrAlias}"""
    room_id, servers = await _resolve_room(request, request.match_info["room_id_or_alias"])
    return await _join(request, requester, room_id, [*_via(request), *servers])


@routes.post(V3 + "/knock/{room_id_or_alias}")
@authenticated
async def knock(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/knock/{roomIdOrAlias}"""
    room_id, servers = await _resolve_room(request, request.match_info["room_id_or_alias"])
    body = await json_object(request, allow_empty=True)
    await request.app[NODE].rooms.set_membership(
        requester.user_id,
        room_id,
        requester.user_id,
        "knock",
        reason=string_field(body, "reason", required=False),
        content=await _profile_content(request, requester.user_id),
        servers=[*_via(request), *servers],
    )
    return json_response({"room_id": room_id})


@routes.post(V3 + "/rooms/{room_id}/leave")
@authenticated
async def leave(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/leave"""
    room_id = room_id_param(request)
    body = await json_object(request, allow_empty=True)
    await request.app[NODE].rooms.set_membership(
        requester.user_id,
        room_id,
        requester.user_id,
        "leave",
        reason=string_field(body, "reason", required=False),
    )
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/forget")
@authenticated
async def forget(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/forget: only once the user has left."""
    room_id = room_id_param(request)
    node = request.app[NODE]
    memberships = await node.events.get_user_memberships(requester.user_id)
    current = memberships.get(room_id)
    if current is None:
        raise not_found(f"{requester.user_id} has never been in room {room_id}")
    if current.event.membership in ("join", "invite", "knock"):
        raise MatrixError(400, "M_UNKNOWN", "Leave the room before forgetting it")
    await node.events.forget_room(requester.user_id, room_id)
    return json_response({})


async def _current_membership(request: web.Request, room_id: str, user_id: str) -> str | None:
    events = request.app[NODE].events
    ids = await events.get_current_state_ids(room_id)
    event_id = ids.get((MEMBER, user_id))
    stored = await events.get_event(event_id) if event_id else None
    return stored.event.membership if stored else None


async def _change_member(
    request: web.Request,
    requester: Requester,
    membership: str,
    *,
    only_from: tuple[str, ...] | None = None,
    refusal: str = "",
) -> web.Response:
    """Set another user's membership (kick, ban, unban, invite); the auth rules decide.
    ``only_from`` names the memberships the target must have now (else 403 ``refusal``)."""
    room_id = room_id_param(request)
    body = await json_object(request)
    target = _user_param(body)
    if only_from is not None and await _current_membership(request, room_id, target) not in (
        only_from
    ):
        raise forbidden(f"{target} {refusal}")
    await request.app[NODE].rooms.set_membership(
        requester.user_id,
        room_id,
        target,
        membership,
        reason=string_field(body, "reason", required=False),
    )
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/kick")
@authenticated
async def kick(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/kick"""
    return await _change_member(
        request,
        requester,
        "leave",
        only_from=("join", "invite", "knock"),
        refusal="is not in the room",
    )


@routes.post(V3 + "/rooms/{room_id}/ban")
@authenticated
async def ban(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/ban"""
    return await _change_member(request, requester, "ban")


@routes.post(V3 + "/rooms/{room_id}/unban")
@authenticated
async def unban(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/unban: the banned user's membership
    becomes leave."""
    return await _change_member(
        request, requester, "leave", only_from=("ban",), refusal="is not banned"
    )


@routes.post(V3 + "/rooms/{room_id}/invite")
@authenticated
async def invite(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/invite"""
    body = await json_object(request)
    if "user_id" not in body and "medium" in body:
        raise MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported")
    _user_param(body)
    return await _change_member(request, requester, "invite")


@routes.put(V3 + "/rooms/{room_id}/redact/{event_id}/{txn_id}")
@authenticated
async def redact(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}"""
    room_id = room_id_param(request)
    event_id = request.match_info["event_id"]
    if not event_id.startswith("$"):
        raise invalid_param("Invalid event ID")
    body = await json_object(request, allow_empty=True)
    content: dict[str, Any] = {}
    if "reason" in body:
        if not isinstance(body["reason"], str):
            raise bad_json("'reason' must be a string")
        content["reason"] = body["reason"]
    txn = TxnKey(requester.user_id, requester.device_id, request.path)
    redaction_id = await request.app[NODE].rooms.send(
        requester.user_id, room_id, REDACTION, content, txn=txn, redacts=event_id
    )
    return json_response({"event_id": redaction_id})
