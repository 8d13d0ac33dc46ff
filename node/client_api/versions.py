"""Server discovery for clients.

Spec: api/client-server/versions.yaml (GET /_matrix/client/versions) and
api/client-server/wellknown.yaml (GET /.well-known/matrix/client).
"""

from __future__ import annotations

from aiohttp import web

from node.appkeys import NODE
from node.errors import json_response

routes = web.RouteTableDef()

# The spec versions whose client-server API Croft serves.
SUPPORTED_VERSIONS = [
    "v1.1",
    "v1.2",
    "v1.3",
    "v1.4",
    "v1.5",
    "v1.6",
    "v1.7",
    "v1.8",
    "v1.9",
    "v1.10",
    "v1.11",
    "v1.12",
]


@routes.get("/_matrix/client/versions")
async def versions(request: web.Request) -> web.Response:
    """GET /_matrix/client/versions"""
    return json_response({"versions": SUPPORTED_VERSIONS, "unstable_features": {}})


@routes.get("/.well-known/matrix/client")
async def well_known_client(request: web.Request) -> web.Response:
    """GET /.well-known/matrix/client: where this server's client API is."""
    base_url = request.app[NODE].config.client.public_baseurl
    if not base_url:
        base_url = f"{request.scheme}://{request.host}"
    return json_response({"m.homeserver": {"base_url": base_url.rstrip("/")}})
