"""Account data and room tags.

Spec: api/client-server/account-data.yaml (GET/PUT /user/{userId}/account_data/{type},
GET/PUT /user/{userId}/rooms/{roomId}/account_data/{type}) and tags.yaml
(GET /user/{userId}/rooms/{roomId}/tags, PUT/DELETE .../tags/{tag}). Only the user
may read or change their own data: 403 M_FORBIDDEN for anyone else.
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.client_api.rooms import room_id_param
from node.errors import forbidden, json_response, not_found
from node.users.account_data import check_client_may_set, check_content_size

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def own_user(request: web.Request, requester: Requester, action: str) -> str:
    """The path's ``userId``, which must be the requester's own (403 otherwise)."""
    user_id = request.match_info["user_id"]
    if user_id != requester.user_id:
        raise forbidden(f"Cannot {action} for other users.")
    return user_id


@routes.get(V3 + "/user/{user_id}/account_data/{type}")
@authenticated
async def get_account_data(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/user/{userId}/account_data/{type}"""
    user_id = own_user(request, requester, "read account data")
    content = await request.app[NODE].account_data.get(user_id, request.match_info["type"])
    if content is None:
        raise not_found("Account data not found.")
    return json_response(content)


@routes.put(V3 + "/user/{user_id}/account_data/{type}")
@authenticated
async def put_account_data(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/user/{userId}/account_data/{type}"""
    user_id = own_user(request, requester, "add account data")
    data_type = request.match_info["type"]
    check_client_may_set(data_type)
    content = await json_object(request)
    check_content_size(content)
    await request.app[NODE].account_data.put(user_id, data_type, content)
    return json_response({})


@routes.get(V3 + "/user/{user_id}/rooms/{room_id}/account_data/{type}")
@authenticated
async def get_room_account_data(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
    user_id = own_user(request, requester, "read account data")
    room_id = room_id_param(request)
    content = await request.app[NODE].account_data.get(user_id, request.match_info["type"], room_id)
    if content is None:
        raise not_found("Room account data not found.")
    return json_response(content)


@routes.put(V3 + "/user/{user_id}/rooms/{room_id}/account_data/{type}")
@authenticated
async def put_room_account_data(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
    user_id = own_user(request, requester, "add account data")
    room_id = room_id_param(request)
    data_type = request.match_info["type"]
    check_client_may_set(data_type)
    content = await json_object(request)
    check_content_size(content)
    await request.app[NODE].account_data.put(user_id, data_type, content, room_id)
    return json_response({})


# -- tags ----------------------------------------------------------------------------------


@routes.get(V3 + "/user/{user_id}/rooms/{room_id}/tags")
@authenticated
async def get_tags(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"""
    user_id = own_user(request, requester, "read tags")
    room_id = room_id_param(request)
    return json_response({"tags": await request.app[NODE].account_data.get_tags(user_id, room_id)})


@routes.put(V3 + "/user/{user_id}/rooms/{room_id}/tags/{tag}")
@authenticated
async def put_tag(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
    user_id = own_user(request, requester, "add tags")
    room_id = room_id_param(request)
    info = await json_object(request, allow_empty=True)
    check_content_size(info)
    await request.app[NODE].account_data.put_tag(user_id, room_id, request.match_info["tag"], info)
    return json_response({})


@routes.delete(V3 + "/user/{user_id}/rooms/{room_id}/tags/{tag}")
@authenticated
async def delete_tag(request: web.Request, requester: Requester) -> web.Response:
    """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
    user_id = own_user(request, requester, "remove tags")
    room_id = room_id_param(request)
    await request.app[NODE].account_data.delete_tag(user_id, room_id, request.match_info["tag"])
    return json_response({})
