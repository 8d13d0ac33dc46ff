"""The client-server API (/_matrix/client/*): one module per spec area.

Handlers parse the request, call a service, and reply; the logic lives in services.
"""

from __future__ import annotations

from aiohttp import web

from node.client_api import (
    account,
    account_data,
    capabilities,
    context,
    devices,
    directory,
    filter,
    keys,
    login,
    media,
    membership,
    presence,
    profile,
    push,
    receipts,
    relations,
    room_keys,
    rooms,
    search,
    sync,
    to_device,
    typing,
    uia,
    versions,
    voip,
)


def add_routes(app: web.Application) -> None:
    for module in (
        versions,
        login,
        rooms,
        membership,
        sync,
        push,
        media,
        account_data,
        filter,
        profile,
        capabilities,
        devices,
        account,
        keys,
        to_device,
        room_keys,
        typing,
        receipts,
        presence,
        relations,
        context,
        search,
        directory,
        voip,
    ):
        app.router.add_routes(module.routes)
    uia.install(app)
