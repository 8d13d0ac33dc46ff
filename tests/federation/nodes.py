"""Real Croft nodes on loopback for the key and authentication tests.

Each node is named ``127.0.0.1:<port>`` (an IP literal: no DNS, no certificate check)
and its federation listener (TLS, self-signed) is on that port, so the nodes find each
other with the real resolver. With ``custom_app`` the node's own federation listener
takes a spare port and the caller serves an application of its own on the named port
(to add test-only routes behind the real middleware).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from node.app import RunningNode, create_federation_app, serve
from node.config import load_config
from node.datadir import init_data_dir, is_initialised
from node.federation.common import Destination, ServerResolver, Unreachable
from node.federation.tls import server_ssl_context
from node.ids import ServerName
from tests.interop.users import MatrixUser
from tests.interop.util import free_port

OWNER = "alice"
PASSWORD = "correct horse battery staple"


class IpResolver:
    """Resolves IP-literal server names (127.0.0.1:PORT) to themselves."""

    async def resolve(self, server_name: str) -> Destination:
        name = ServerName.parse(server_name)
        if not name.is_ip_literal:
            raise Unreachable(f"{server_name}: test resolver knows only IP literals")
        return Destination(server_name, name.host, name.port or 8448, None, server_name)


class CountingResolver:
    """Counts look-ups per server name, and makes ``blocked`` names unreachable."""

    def __init__(self, inner: ServerResolver, blocked: Collection[str] = ()) -> None:
        self.inner = inner
        self.blocked = set(blocked)
        self.calls: Counter[str] = Counter()

    async def resolve(self, server_name: str) -> Destination:
        self.calls[server_name] += 1
        if server_name in self.blocked:
            raise Unreachable(f"{server_name}: blocked by the test")
        return await self.inner.resolve(server_name)


def init_node_dir(tmp_path: Path, name: str, port: int, *, custom_app: bool = False) -> Path:
    d = tmp_path / name
    if not is_initialised(d):
        init_data_dir(
            d,
            server_name=f"127.0.0.1:{port}",
            owner=OWNER,
            password=PASSWORD,
            client_listen="127.0.0.1:0",
            federation_listen="127.0.0.1:0" if custom_app else f"127.0.0.1:{port}",
        )
    return d


@asynccontextmanager
async def croft_node(
    tmp_path: Path, name: str, *, port: int | None = None
) -> AsyncIterator[RunningNode]:
    """A running node ``127.0.0.1:<port>``; the same ``name`` reuses its data dir."""
    port = port or free_port()
    # init_data_dir runs its own event loop: in a thread, away from the test's.
    d = await asyncio.to_thread(init_node_dir, tmp_path, name, port)
    running = await serve(load_config(d, environ={}))
    running.node.federation_client.resolver = CountingResolver(IpResolver())
    try:
        yield running
    finally:
        await running.stop()


@asynccontextmanager
async def croft_node_with_app(
    tmp_path: Path, name: str, routes: web.RouteTableDef
) -> AsyncIterator[RunningNode]:
    """A node whose named port serves ``create_federation_app(node)`` plus ``routes``."""
    port = free_port()
    d = await asyncio.to_thread(init_node_dir, tmp_path, name, port, custom_app=True)
    config = load_config(d, environ={})
    running = await serve(config)
    running.node.federation_client.resolver = CountingResolver(IpResolver())
    app = create_federation_app(running.node)
    app.router.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = server_ssl_context(
        config.path(config.federation.tls_certificate),
        config.path(config.federation.tls_private_key),
    )
    try:
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
        yield running
    finally:
        await runner.cleanup()
        await running.stop()


def resolver_of(running: RunningNode) -> CountingResolver:
    resolver = running.node.federation_client.resolver
    assert isinstance(resolver, CountingResolver)
    return resolver


class Client(MatrixUser):
    """The owner of one in-process node, over its client API."""

    def __init__(self, http: aiohttp.ClientSession, node: RunningNode) -> None:
        user_id = f"@{OWNER}:{node.node.config.server_name}"
        super().__init__(http, f"http://{node.listeners['client']}", user_id, "")
        self.node = node

    async def login(self) -> None:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": OWNER},
            "password": PASSWORD,
        }
        self.token = (await self.call("POST", "/login", body))["access_token"]


@asynccontextmanager
async def owner_pair(tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    """Two running nodes, ``a`` and ``b``, and their owners logged in."""
    async with (
        aiohttp.ClientSession() as http,
        croft_node(tmp_path, "a") as a,
        croft_node(tmp_path, "b") as b,
    ):
        ca, cb = Client(http, a), Client(http, b)
        await ca.login()
        await cb.login()
        yield ca, cb
