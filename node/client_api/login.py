"""Login, logout and whoami.

Spec: api/client-server/login.yaml (GET and POST /_matrix/client/v3/login),
logout.yaml (POST /logout, /logout/all), whoami.yaml (GET /account/whoami).
Only the owner exists; only m.login.password is offered.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object, string_field
from node.errors import MatrixError, bad_json, json_response

routes = web.RouteTableDef()

PASSWORD = "m.login.password"


@routes.get("/_matrix/client/v3/login")
@routes.get("/_matrix/client/r0/login")
async def login_flows(request: web.Request) -> web.Response:
    """GET /_matrix/client/v3/login: the login types this server accepts."""
    return json_response({"flows": [{"type": PASSWORD}]})


@routes.post("/_matrix/client/v3/login")
@routes.post("/_matrix/client/r0/login")
async def login(request: web.Request) -> web.Response:
    """POST /_matrix/client/v3/login"""
    body = await json_object(request)
    login_type = string_field(body, "type")
    if login_type != PASSWORD:
        raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type!r}")
    user = _user_from_identifier(body)
    password = string_field(body, "password")
    assert password is not None
    device_id = string_field(body, "device_id", required=False)
    display_name = string_field(body, "initial_device_display_name", required=False)
    node = request.app[NODE]
    result = await node.accounts.login_password(
        user,
        password,
        device_id=device_id,
        display_name=display_name,
        source=request.remote or "unknown",
    )
    return json_response(
        {
            "user_id": result.user_id,
            "access_token": result.access_token,
            "device_id": result.device_id,
            "home_server": node.config.server_name,
        }
    )


def _user_from_identifier(body: dict[str, Any]) -> str:
    identifier = body.get("identifier")
    if identifier is None:
        user = body.get("user")  # deprecated top-level form
        if isinstance(user, str):
            return user
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'identifier'")
    if not isinstance(identifier, dict):
        raise bad_json("'identifier' must be an object")
    if identifier.get("type") != "m.id.user":
        raise MatrixError(400, "M_UNKNOWN", "Only m.id.user identifiers are supported")
    user = identifier.get("user")
    if not isinstance(user, str):
        raise bad_json("'identifier.user' must be a string")
    return user


@routes.post("/_matrix/client/v3/logout")
@authenticated
async def logout(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/logout: invalidate the token and delete its device."""
    await request.app[NODE].accounts.logout(requester)
    return json_response({})


@routes.post("/_matrix/client/v3/logout/all")
@authenticated
async def logout_all(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/logout/all"""
    await request.app[NODE].accounts.logout_all(requester)
    return json_response({})


@routes.get("/_matrix/client/v3/account/whoami")
@authenticated
async def whoami(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/account/whoami"""
    return json_response(
        {
            "user_id": requester.user_id,
            "device_id": requester.device_id,
            "is_guest": False,
        }
    )
