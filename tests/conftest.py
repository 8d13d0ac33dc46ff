"""Shared fixtures: a real data directory, a real node on loopback, HTTP helpers."""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.app import RunningNode, serve
from node.config import Config, load_config
from node.datadir import init_data_dir
from node.federation.common import Destination, Unreachable
from node.ids import ServerName
from node.storage.database import Database

OWNER = "alice"
PASSWORD = "correct horse battery staple"
SERVER_NAME = "127.0.0.1:8448"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An initialised data directory whose listeners take free loopback ports."""
    d = tmp_path / "node"
    init_data_dir(
        d,
        server_name=SERVER_NAME,
        owner=OWNER,
        password=PASSWORD,
        client_listen="127.0.0.1:0",
        federation_listen="127.0.0.1:0",
    )
    return d


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of its own, without a node (store-level tests)."""
    database = await Database.open(tmp_path / "croft.db")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def config(data_dir: Path) -> Config:
    return load_config(data_dir, environ={})


class LoopbackOnlyResolver:
    """Federation from test nodes reaches loopback only (shared/LAB.md): a server named
    by a loopback IP literal resolves to itself; any other name (``elsewhere.example``
    in tests about remote users) is unreachable, without a DNS look-up."""

    async def resolve(self, server_name: str) -> Destination:
        name = ServerName.parse(server_name)
        if not name.is_ip_literal or not ipaddress.ip_address(name.host).is_loopback:
            raise Unreachable(f"{server_name}: tests reach loopback servers only")
        return Destination(server_name, name.host, name.port or 8448, None, server_name)


@pytest.fixture
async def node(config: Config) -> AsyncIterator[RunningNode]:
    running = await serve(config)
    running.node.federation_client.resolver = LoopbackOnlyResolver()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def client_url(node: RunningNode) -> str:
    return f"http://{node.listeners['client']}"


@pytest.fixture
def federation_url(node: RunningNode) -> str:
    return f"https://{node.listeners['federation']}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the node's certificate is self-signed
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        yield session


@pytest.fixture(autouse=True)
def _loopback_federation_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node a test starts in this process (through ``serve`` or ``Node.start``)
    resolves server names with :class:`LoopbackOnlyResolver`: no test can make a DNS
    look-up or reach a made-up server such as ``remote.example``. Tests of the real
    resolver build it themselves, against their own DNS server."""
    from node.federation.common import LazyResolver

    monkeypatch.setattr(LazyResolver, "_resolver", lambda self: LoopbackOnlyResolver())


@pytest.fixture(autouse=True)
def _no_croft_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's CROFT_* settings."""
    for name in list(os.environ):
        if name.startswith("CROFT_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def token(client_url: str, http: aiohttp.ClientSession) -> str:
    """An access token of the owner, on device DEV1."""
    from tests.client import login

    return await login(http, client_url, "DEV1")
