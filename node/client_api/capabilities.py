"""Capabilities negotiation: what this node lets the user do.

Spec: api/client-server/capabilities.yaml (GET /capabilities) and
content/client-server-api/_index.md "Capabilities negotiation". Each answer is what
the node really does: passwords and every profile field can be changed; rooms are
created in version 12 and versions 10 to 12 are stable; no 3PIDs, no login tokens,
rooms are not forgotten on leave. ``m.account_moderation`` is left out, as the spec
asks when nothing in it would be true.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.client_api.request import authenticated
from node.errors import json_response
from node.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def capabilities() -> dict[str, Any]:
    return {
        "m.change_password": {"enabled": True},
        "m.room_versions": {
            "default": DEFAULT_ROOM_VERSION.identifier,
            "available": dict.fromkeys(KNOWN_ROOM_VERSIONS, "stable"),
        },
        "m.profile_fields": {"enabled": True},
        # Deprecated by m.profile_fields (v1.16) but still read by many clients.
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        "m.3pid_changes": {"enabled": False},
        "m.get_login_token": {"enabled": False},
        "m.forget_forced_upon_leave": {"enabled": False},
    }


@routes.get(V3 + "/capabilities")
@authenticated
async def get_capabilities(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/capabilities"""
    return json_response({"capabilities": capabilities()})
