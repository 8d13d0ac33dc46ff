"""Helpers for push tests against a real node: the owner's token and JSON calls."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.client import call, login  # noqa: F401  (call: used by the push tests)
from tests.conftest import OWNER, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"


@pytest.fixture
async def token(client_url: str, http: aiohttp.ClientSession) -> str:
    return await login(http, client_url, "PUSHDEV")


@pytest.fixture
def v3(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v3"


class Gateway:
    """A push gateway that records what it receives and answers from a script."""

    def __init__(self) -> None:
        self.url = ""
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.answers: list[tuple[int, Any]] = []
        self.hang = False

    async def notify(self, request: web.Request) -> web.Response:
        await self.received.put(await request.json())
        if self.hang:
            await asyncio.sleep(3600)
        status, body = self.answers.pop(0) if self.answers else (200, {"rejected": []})
        return web.json_response(body, status=status)

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(10):
            return await self.received.get()


@asynccontextmanager
async def running_gateway(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Gateway]:
    """A Gateway served by a real aiohttp server on 127.0.0.1 (HTTPS with a context)."""
    gw = Gateway()
    app = web.Application()
    app.router.add_post("/_matrix/push/v1/notify", gw.notify)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if ssl_context is not None else "http"
    gw.url = f"{scheme}://127.0.0.1:{port}/_matrix/push/v1/notify"
    try:
        yield gw
    finally:
        await runner.cleanup()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with running_gateway() as gw:
        yield gw
