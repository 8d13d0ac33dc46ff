"""Stored filters.

Spec: api/client-server/filter.yaml (POST /user/{userId}/filter,
GET /user/{userId}/filter/{filterId}); content/client-server-api/_index.md
"Filtering". /sync's ``filter`` parameter is read by
:meth:`node.users.filters.FilterService.load_filter`.
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.account_data import own_user
from node.client_api.request import authenticated, json_object
from node.errors import json_response, not_found

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


@routes.post(V3 + "/user/{user_id}/filter")
@authenticated
async def create_filter(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/user/{userId}/filter"""
    user_id = own_user(request, requester, "create filters")
    definition = await json_object(request)
    filter_id = await request.app[NODE].filters.create(user_id, definition)
    return json_response({"filter_id": filter_id})


@routes.get(V3 + "/user/{user_id}/filter/{filter_id}")
@authenticated
async def get_filter(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/user/{userId}/filter/{filterId}"""
    user_id = own_user(request, requester, "read filters")
    definition = await request.app[NODE].filters.get_definition(
        user_id, request.match_info["filter_id"]
    )
    if definition is None:
        raise not_found("No such filter.")
    return json_response(definition)
