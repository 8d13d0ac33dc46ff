"""Inbound federation endpoints (the server-server API), served on the TLS listener.

Spec: api/server-server/keys_server.yaml (GET /_matrix/key/v2/server) and
api/server-server/version.yaml (GET /_matrix/federation/v1/version).
"""

from __future__ import annotations

from aiohttp import web

from node import __version__
from node.appkeys import NODE
from node.errors import json_response

routes = web.RouteTableDef()


@routes.get("/_matrix/key/v2/server")
@routes.get("/_matrix/key/v2/server/{key_id}")  # deprecated form: the key ID is ignored
async def server_keys(request: web.Request) -> web.Response:
    """GET /_matrix/key/v2/server: this server's signed key document."""
    return json_response(request.app[NODE].server_key.key_document())


@routes.get("/_matrix/federation/v1/version")
async def version(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/version"""
    return json_response({"server": {"name": "Croft", "version": __version__}})


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
