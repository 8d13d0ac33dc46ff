"""Assembling the node: shared services, the two aiohttp applications, and serving.

The client API (plain HTTP, loopback by default) and the federation API (TLS) are
separate applications on separate listeners; both hold the same :class:`Node`
under the ``NODE`` AppKey. Start-up order: database (migrations) -> keys ->
services -> listeners; shutdown is the reverse, and queued database writes finish
before the database closes.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from node import errors
from node.accounts import AccountService
from node.appkeys import NODE
from node.config import Config, ListenAddress
from node.datadir import SIGNING_KEY_FILE, remove_run_file, write_run_file
from node.federation.keys import ServerKey, load_signing_key_file
from node.rooms.service import RoomService
from node.storage.accounts import AccountStore
from node.storage.database import Database
from node.storage.events import EventStore
from node.sync.notifier import Notifier

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ListenError(Exception):
    """A listener could not be opened (port in use, no permission, bad address)."""


@dataclass
class Node:
    """The services of one running homeserver, shared by both applications."""

    config: Config
    db: Database
    server_key: ServerKey
    accounts: AccountService
    events: EventStore
    rooms: RoomService
    notifier: Notifier
    started_at: float = field(default_factory=time.time)

    @classmethod
    async def start(cls, config: Config) -> Node:
        signing_key = load_signing_key_file(config.path(SIGNING_KEY_FILE))
        db = await Database.open(config.database_path, cache_kib=config.storage.sqlite_cache_kib)
        server_key = ServerKey(config.server_name, signing_key)
        accounts = AccountService(AccountStore(db), config.server_name)
        events = EventStore(db)
        notifier = Notifier()
        notifier.set_initial("events", await events.max_stream_ordering())
        rooms = RoomService(db, events, server_key, notifier)
        return cls(config, db, server_key, accounts, events, rooms, notifier)

    async def stop(self) -> None:
        await self.db.close()


# -- the client application ----------------------------------------------------------------

CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}


def cors_middleware(allow_origin: str) -> Any:
    """Spec: client-server-api "Web Browser Clients": CORS on every response, and
    OPTIONS preflight requests answered for any path."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = allow_origin
        response.headers.update(CORS_HEADERS)
        return response

    return middleware


def create_client_app(node: Node) -> web.Application:
    from node import client_api

    app = web.Application(
        middlewares=[
            cors_middleware(node.config.client.cors_allow_origin),
            errors.error_middleware,
        ],
        client_max_size=node.config.media.max_upload_bytes + 64 * 1024,
    )
    app[NODE] = node
    client_api.add_routes(app)
    return app


def create_federation_app(node: Node) -> web.Application:
    from node.federation import server

    app = web.Application(middlewares=[errors.error_middleware], client_max_size=8 * 1024**2)
    app[NODE] = node
    server.add_routes(app)
    return app


# -- serving -------------------------------------------------------------------------------


@dataclass
class RunningNode:
    node: Node
    runners: list[web.AppRunner]
    listeners: dict[str, str]

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        await self.node.stop()
        remove_run_file(self.node.config.data_dir)
        log.info("stopped")


async def _start_site(runner: web.AppRunner, name: str, addr: ListenAddress, **kw: Any) -> str:
    site = web.TCPSite(runner, addr.host, addr.port, reuse_address=True, **kw)
    try:
        await site.start()
    except OSError as e:
        reason = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
        raise ListenError(f"{name} listener {addr}: {reason}") from None
    # With port 0 the system picks one: report the real port.
    server = site._server  # aiohttp keeps the asyncio Server here
    port = addr.port
    if server is not None and getattr(server, "sockets", None):
        port = server.sockets[0].getsockname()[1]
    return str(ListenAddress(addr.host, port))


async def serve(config: Config) -> RunningNode:
    """Start the node and its listeners; the caller waits, then calls ``stop()``."""
    node = await Node.start(config)
    runners: list[web.AppRunner] = []
    listeners: dict[str, str] = {}
    try:
        client = web.AppRunner(create_client_app(node), access_log=None)
        await client.setup()
        runners.append(client)
        listeners["client"] = await _start_site(client, "client", config.client.listen)
        if config.federation.enabled:
            from node.federation.tls import server_ssl_context

            ctx = server_ssl_context(
                config.path(config.federation.tls_certificate),
                config.path(config.federation.tls_private_key),
            )
            fed = web.AppRunner(create_federation_app(node), access_log=None)
            await fed.setup()
            runners.append(fed)
            listeners["federation"] = await _start_site(
                fed, "federation", config.federation.listen, ssl_context=ctx
            )
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        await node.stop()
        raise
    # Logged once every listener is open: a failed start logs no address it gave up.
    log.info("client API listening on http://%s", listeners["client"])
    if "federation" in listeners:
        log.info("federation API listening on https://%s", listeners["federation"])
    write_run_file(
        config.data_dir,
        {
            "pid": os.getpid(),
            "server_name": config.server_name,
            "profile": config.profile,
            "listeners": listeners,
            "started_at": node.started_at,
        },
    )
    log.info("%s is up (profile %s)", config.server_name, config.profile)
    return RunningNode(node, runners, listeners)
