"""Profiles.

Spec: api/client-server/profile.yaml (GET /profile/{userId}; GET, PUT and DELETE
/profile/{userId}/{keyName}); content/client-server-api/_index.md "Profiles".
Reading needs no access token; only the user may change their own profile.
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.errors import forbidden, json_response, missing_param
from node.users.profile import check_key

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def _own_profile(request: web.Request, requester: Requester) -> str:
    user_id = request.match_info["user_id"]
    if user_id != requester.user_id:
        raise forbidden("Cannot change the profile of another user.")
    return user_id


@routes.get(V3 + "/profile/{user_id}")
async def get_profile(request: web.Request) -> web.Response:
    """GET /_matrix/client/v3/profile/{userId}"""
    profile = await request.app[NODE].profiles.get_profile(request.match_info["user_id"])
    return json_response(profile)


@routes.get(V3 + "/profile/{user_id}/{key_name}")
async def get_profile_field(request: web.Request) -> web.Response:
    """GET /_matrix/client/v3/profile/{userId}/{keyName}"""
    key = request.match_info["key_name"]
    value = await request.app[NODE].profiles.get_field(request.match_info["user_id"], key)
    return json_response({key: value})


@routes.put(V3 + "/profile/{user_id}/{key_name}")
@authenticated
async def set_profile_field(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/profile/{userId}/{keyName}"""
    user_id = _own_profile(request, requester)
    key = request.match_info["key_name"]
    check_key(key)
    body = await json_object(request)
    if key not in body:
        raise missing_param(f"The body must have the '{key}' property")
    await request.app[NODE].profiles.set_field(user_id, key, body[key])
    return json_response({})


@routes.delete(V3 + "/profile/{user_id}/{key_name}")
@authenticated
async def delete_profile_field(request: web.Request, requester: Requester) -> web.Response:
    """DELETE /_matrix/client/v3/profile/{userId}/{keyName}"""
    user_id = _own_profile(request, requester)
    await request.app[NODE].profiles.delete_field(user_id, request.match_info["key_name"])
    return json_response({})
