"""Room aliases and the published room directory.

Spec: api/client-server/directory.yaml (PUT/GET/DELETE /directory/room/{roomAlias},
GET /rooms/{roomId}/aliases) and list_public_rooms.yaml (GET/PUT
/directory/list/room/{roomId}, GET/POST /publicRooms). GET /directory/room,
GET /directory/list/room and GET /publicRooms need no access token (the spec gives
them no security requirement). The logic is in node/directory/service.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.paging import int_param
from node.client_api.request import authenticated, json_object
from node.client_api.rooms import room_id_param
from node.directory.service import (
    DEFAULT_PUBLIC_ROOMS_LIMIT,
    MAX_PUBLIC_ROOMS_LIMIT,
    PublicRoomsQuery,
)
from node.errors import MatrixError, bad_json, invalid_param, json_response
from node.ids import InvalidId, RoomID

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


@routes.get(V3 + "/directory/room/{room_alias}")
async def get_alias(request: web.Request) -> web.Response:
    """GET /_matrix/client/v3/directory/room/{roomAlias}"""
    directory = request.app[NODE].directory
    return json_response(await directory.lookup(request.match_info["room_alias"]))


@routes.put(V3 + "/directory/room/{room_alias}")
@authenticated
async def put_alias(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/directory/room/{roomAlias}"""
    body = await json_object(request)
    room_id = body.get("room_id")
    if room_id is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'room_id'")
    if not isinstance(room_id, str):
        raise bad_json("'room_id' must be a string")
    try:
        RoomID.parse(room_id)
    except InvalidId as e:
        raise invalid_param(f"Invalid room ID: {e}") from None
    await request.app[NODE].directory.create_alias(
        requester.user_id, request.match_info["room_alias"], room_id
    )
    return json_response({})


@routes.delete(V3 + "/directory/room/{room_alias}")
@authenticated
async def delete_alias(request: web.Request, requester: Requester) -> web.Response:
    """DELETE /_matrix/client/v3/directory/room/{roomAlias}"""
    await request.app[NODE].directory.delete_alias(
        requester.user_id, request.match_info["room_alias"]
    )
    return json_response({})


@routes.get(V3 + "/rooms/{room_id}/aliases")
@authenticated
async def room_aliases(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/rooms/{roomId}/aliases"""
    room_id = room_id_param(request)
    aliases = await request.app[NODE].directory.local_aliases(requester.user_id, room_id)
    return json_response({"aliases": aliases})


@routes.get(V3 + "/directory/list/room/{room_id}")
async def get_visibility(request: web.Request) -> web.Response:
    """GET /_matrix/client/v3/directory/list/room/{roomId}"""
    room_id = room_id_param(request)
    return json_response({"visibility": await request.app[NODE].directory.visibility(room_id)})


@routes.put(V3 + "/directory/list/room/{room_id}")
@authenticated
async def put_visibility(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/directory/list/room/{roomId}"""
    room_id = room_id_param(request)
    body = await json_object(request, allow_empty=True)
    visibility = body.get("visibility", "public")
    if visibility not in ("public", "private"):
        raise invalid_param("'visibility' must be 'public' or 'private'")
    await request.app[NODE].directory.set_visibility(requester.user_id, room_id, visibility)
    return json_response({})


def _server_param(request: web.Request) -> str | None:
    return request.query.get("server") or None


@routes.get(V3 + "/publicRooms")
async def get_public_rooms(request: web.Request) -> web.Response:
    """GET /_matrix/client/v3/publicRooms"""
    query = PublicRoomsQuery(
        limit=int_param(
            request, "limit", DEFAULT_PUBLIC_ROOMS_LIMIT, minimum=1, maximum=MAX_PUBLIC_ROOMS_LIMIT
        ),
        since=request.query.get("since") or None,
    )
    directory = request.app[NODE].directory
    return json_response(await directory.public_rooms(query, _server_param(request)))


@routes.post(V3 + "/publicRooms")
@authenticated
async def post_public_rooms(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/publicRooms"""
    body = await json_object(request, allow_empty=True)
    query = _public_rooms_body(body)
    directory = request.app[NODE].directory
    return json_response(await directory.public_rooms(query, _server_param(request)))


def _public_rooms_body(body: dict[str, Any]) -> PublicRoomsQuery:
    limit = body.get("limit")
    if limit is None:
        limit = DEFAULT_PUBLIC_ROOMS_LIMIT
    elif not isinstance(limit, int) or isinstance(limit, bool):
        raise bad_json("'limit' must be an integer")
    elif limit < 1:
        raise invalid_param("'limit' must be at least 1")
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise bad_json("'since' must be a string")
    flt = body.get("filter")
    if flt is None:
        flt = {}
    if not isinstance(flt, dict):
        raise bad_json("'filter' must be an object")
    term = flt.get("generic_search_term")
    if term is not None and not isinstance(term, str):
        raise bad_json("'filter.generic_search_term' must be a string")
    room_types = flt.get("room_types")
    if room_types is not None and (
        not isinstance(room_types, list)
        or not all(t is None or isinstance(t, str) for t in room_types)
    ):
        raise bad_json("'filter.room_types' must be a list of strings and nulls")
    return PublicRoomsQuery(
        limit=min(limit, MAX_PUBLIC_ROOMS_LIMIT),
        since=since or None,
        search_term=term or None,
        room_types=tuple(room_types) if room_types is not None else None,
    )
