"""GET and PUT /_matrix/client/v3/presence/{userId}/status.

Spec: api/client-server/presence.yaml and modules/presence.md. PUT only for oneself
(403 M_FORBIDDEN); ``presence`` is one of online, unavailable, offline; ``status_msg``
a string (null clears it). GET of another user needs a shared room (403 otherwise).
With presence disabled, PUT is checked and accepted but changes nothing and GET says
``offline`` (see node/ephemeral/presence.py). The logic: node/ephemeral/presence.py.
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.ephemeral.presence import OFFLINE, PRESENCE_STATES
from node.errors import bad_json, forbidden, invalid_param, json_response, missing_param
from node.ids import InvalidId, UserID

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"
# Not in the spec: a bound on what is kept and sent to every sync.
MAX_STATUS_MSG_CHARS = 1024


def _user_id_param(request: web.Request) -> str:
    raw = request.match_info["user_id"]
    try:
        UserID.parse(raw)
    except InvalidId as e:
        raise invalid_param(f"Invalid user ID: {e}") from None
    return raw


@routes.put(V3 + "/presence/{user_id}/status")
@authenticated
async def put_presence(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/presence/{userId}/status"""
    if request.match_info["user_id"] != requester.user_id:
        raise forbidden("You can only set your own presence")
    body = await json_object(request)
    presence = body.get("presence")
    if presence is None:
        raise missing_param("Missing 'presence'")
    if not isinstance(presence, str):
        raise bad_json("'presence' must be a string")
    if presence not in PRESENCE_STATES:
        raise invalid_param(f"'presence' must be one of {', '.join(PRESENCE_STATES)}")
    status_msg = body.get("status_msg")
    if status_msg is not None:
        if not isinstance(status_msg, str):
            raise bad_json("'status_msg' must be a string")
        if len(status_msg) > MAX_STATUS_MSG_CHARS:
            raise invalid_param(f"'status_msg' is limited to {MAX_STATUS_MSG_CHARS} characters")
    request.app[NODE].presence.set_presence(requester.user_id, presence, status_msg)
    return json_response({})


@routes.get(V3 + "/presence/{user_id}/status")
@authenticated
async def get_presence(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/presence/{userId}/status"""
    user_id = _user_id_param(request)
    service = request.app[NODE].presence
    if not service.enabled:
        return json_response({"presence": OFFLINE})
    if not await service.can_see(requester.user_id, user_id):
        raise forbidden("You are not allowed to see their presence")
    return json_response(service.content(user_id))
