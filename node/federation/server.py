"""Inbound federation endpoints (the server-server API), served on the TLS listener.

Spec: api/server-server/version.yaml (GET /_matrix/federation/v1/version). The key
endpoints (/_matrix/key/v2/*) are in node/federation/key_server.py.
"""

from __future__ import annotations

from aiohttp import web

from node import __version__
from node.errors import json_response

routes = web.RouteTableDef()


@routes.get("/_matrix/federation/v1/version")
async def version(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/version"""
    return json_response({"server": {"name": "Croft", "version": __version__}})


def add_routes(app: web.Application) -> None:
    from node.federation import key_server, membership, queries, room_reads, transactions

    app.router.add_routes(routes)
    key_server.add_routes(app)
    room_reads.add_routes(app)
    transactions.add_routes(app)
    membership.add_routes(app)
    queries.add_routes(app)
