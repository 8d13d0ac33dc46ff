"""A fake peer's PUT /_matrix/federation/v1/send/{txnId} on 127.0.0.1, and a small HTTP
transport for the sender tests (the real FederationClient signs and resolves; these
tests are about the queue, so plain HTTP to a known port is enough).

The peer records every transaction it accepts, dedupes on (origin, txnId) as the
spec asks of receivers, and can be told to answer with an error, to hang, or be down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from node.federation.common import InvalidResponse, RemoteError, Unreachable


@dataclass(frozen=True)
class Received:
    txn_id: str
    origin: str
    pdus: list[dict[str, Any]]
    edus: list[dict[str, Any]]


class FakePeer:
    def __init__(self) -> None:
        self.received: list[Received] = []  # transactions answered with 200, first time
        # (txnId, status answered; 0: hung) of every PUT
        self.attempts: list[tuple[str, int]] = []
        self.fail_status: int | None = None  # answer every PUT with this status
        self.fail_body: dict[str, Any] = {}
        self.hang = False  # keep every PUT waiting (until stop)
        self.url = ""
        self._responses: dict[tuple[str, str], dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def start(self) -> str:
        """Listen on a new free loopback port; returns the base URL."""
        app = web.Application()
        app.router.add_put("/_matrix/federation/v1/send/{txn_id}", self._send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Go down: the port is closed (connections are refused)."""
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._release = asyncio.Event()

    async def _send(self, request: web.Request) -> web.Response:
        txn_id = request.match_info["txn_id"]
        body = await request.json()
        if self.hang:
            async with self._changed:
                self.attempts.append((txn_id, 0))
                self._changed.notify_all()
            await self._release.wait()
            return web.json_response({"errcode": "M_UNKNOWN"}, status=503)
        status = self.fail_status or 200
        async with self._changed:
            self.attempts.append((txn_id, status))
            self._changed.notify_all()
        if status != 200:
            return web.json_response(self.fail_body, status=status)
        key = (body["origin"], txn_id)
        cached = self._responses.get(key)
        if cached is not None:
            return web.json_response(cached)
        response = {"pdus": {}}
        async with self._changed:
            self.received.append(Received(txn_id, body["origin"], body["pdus"], body["edus"]))
            self._responses[key] = response
            self._changed.notify_all()
        return web.json_response(response)

    async def wait_for(self, predicate: Callable[[FakePeer], bool]) -> None:
        """Wait until ``predicate(self)`` holds (the pytest timeout bounds a bug)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    @property
    def pdus(self) -> list[dict[str, Any]]:
        return [pdu for txn in self.received for pdu in txn.pdus]

    @property
    def edus(self) -> list[dict[str, Any]]:
        return [edu for txn in self.received for edu in txn.edus]


class HttpTransport:
    """PUTs a transaction as JSON to the URL known for its destination."""

    def __init__(self, session: aiohttp.ClientSession, urls: Mapping[str, str]) -> None:
        self.session = session
        self.urls = urls
        self.calls: list[tuple[str, str]] = []  # (destination, txnId)

    async def send_transaction(
        self, destination: str, txn_id: str, body: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        self.calls.append((destination, txn_id))
        base = self.urls.get(destination)
        if base is None:
            raise Unreachable(f"{destination}: no address known")
        url = f"{base}/_matrix/federation/v1/send/{quote(txn_id, safe='')}"
        try:
            async with self.session.put(url, json=body) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                if resp.status != 200:
                    raise RemoteError(
                        destination, resp.status, data if isinstance(data, dict) else None
                    )
                if not isinstance(data, dict):
                    raise InvalidResponse(f"{destination}: the answer is not a JSON object")
                return data
        except (TimeoutError, aiohttp.ClientConnectionError) as e:
            raise Unreachable(f"{destination}: {e}") from e
