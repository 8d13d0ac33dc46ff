"""The client-server API (/_matrix/client/*): one module per spec area.

Handlers parse the request, call a service, and reply; the logic lives in services.
"""

from __future__ import annotations

from aiohttp import web

from node.client_api import login, rooms, versions


def add_routes(app: web.Application) -> None:
    for module in (versions, login, rooms):
        app.router.add_routes(module.routes)
