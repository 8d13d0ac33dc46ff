"""Account management: changing the password, and (not) deactivating the account.

Spec: content/client-server-api/_index.md "Account management" -> "Password
management" and "Account deactivation"; api/client-server/password_management.yaml
(POST /account/password: user-interactive auth; ``logout_devices``, default true,
deletes every other device and its tokens; the requester's token stays valid) and
account_deactivation.yaml (POST /account/deactivate).

Decisions for a single-owner node:

* A password change needs the access token as well as the password (the spec also
  allows it without a token, for reset flows through e-mail, which this node lacks).
* Deactivation is refused with 403 M_FORBIDDEN: the owner is the node's only account
  and no one can register another, so a deactivated owner would be locked out of the
  node for good. To retire a node, stop it and delete its data directory.
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object, string_field
from node.client_api.uia import require_password
from node.errors import MatrixError, bad_json, forbidden, json_response

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


@routes.post(V3 + "/account/password")
@authenticated
async def change_password(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/account/password (UIA)"""
    body = await json_object(request)
    new_password = string_field(body, "new_password")
    assert new_password is not None
    if not new_password:
        raise MatrixError(400, "M_WEAK_PASSWORD", "The new password must not be empty")
    logout_devices = body.get("logout_devices", True)
    if not isinstance(logout_devices, bool):
        raise bad_json("'logout_devices' must be a boolean")
    await require_password(request, requester, body)
    await request.app[NODE].accounts.change_password(
        requester.user_id,
        new_password,
        logout_devices=logout_devices,
        keep_device=requester.device_id,
    )
    return json_response({})


@routes.post(V3 + "/account/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    """POST /_matrix/client/v3/account/deactivate: refused on a single-owner node."""
    raise forbidden(
        "This node has a single owner account, which cannot be deactivated: no other"
        " account could ever log in again. To retire the node, stop it and delete its"
        " data directory."
    )
