"""GET /_matrix/client/v3/voip/turnServer: TURN credentials for calls.

Spec: api/client-server/voip.yaml and content/client-server-api/modules/voip_events.md
("Server behaviour": the homeserver MAY provide a TURN server). Credentials follow the
TURN REST API convention (coturn's ``use-auth-secret``): the username is
``"<expiry unix seconds>:<user_id>"`` and the password is
``base64(HMAC-SHA1(shared_secret, username))``, so the TURN server can check them
without talking to us, and they stop working after ``turn_user_lifetime_s``.

With no TURN configured (no URIs or no secret, or ``features.calls`` off) the answer
is ``{}``: the spec's schema has no "no TURN" form, and ``{}`` is what clients
(Element, matrix-js-sdk) and Synapse already treat as "no TURN server".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated
from node.config import VoipConfig
from node.errors import json_response

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def turn_credentials(cfg: VoipConfig, user_id: str, now_s: float) -> dict[str, Any]:
    """The turnServer answer for ``user_id`` at time ``now_s`` ({} without TURN)."""
    if not cfg.turn_uris or not cfg.turn_shared_secret:
        return {}
    expiry = int(now_s) + cfg.turn_user_lifetime_s
    username = f"{expiry}:{user_id}"
    mac = hmac.new(cfg.turn_shared_secret.encode(), username.encode(), hashlib.sha1)
    return {
        "username": username,
        "password": base64.b64encode(mac.digest()).decode("ascii"),
        "uris": list(cfg.turn_uris),
        "ttl": cfg.turn_user_lifetime_s,
    }


@routes.get(V3 + "/voip/turnServer")
@authenticated
async def turn_server(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/voip/turnServer"""
    config = request.app[NODE].config
    if not config.features.calls:
        return json_response({})
    return json_response(turn_credentials(config.voip, requester.user_id, time.time()))
