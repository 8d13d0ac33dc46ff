"""A small JSON client for the tests of relations, search and the directory: the owner
logged in on a real node, and helpers to create rooms and send events."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import OWNER, PASSWORD, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"
_txn = itertools.count()


@dataclass
class Client:
    http: aiohttp.ClientSession
    base: str  # http://host:port
    token: str | None

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        status: int = 200,
        params: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        """``path`` starts with v1/ or v3/; returns the JSON body after checking the
        status."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        url = f"{self.base}/_matrix/client/{path}"
        async with self.http.request(method, url, json=body, params=params, headers=headers) as r:
            data = await r.json()
            assert r.status == status, (r.status, data)
            return data

    async def create_room(self, **body: Any) -> str:
        return str((await self.call("POST", "v3/createRoom", body))["room_id"])

    async def send(
        self, room_id: str, content: dict[str, Any], etype: str = "m.room.message"
    ) -> str:
        path = f"v3/rooms/{quote(room_id)}/send/{etype}/t{next(_txn)}"
        return str((await self.call("PUT", path, content))["event_id"])

    async def text(self, room_id: str, body: str, **extra: Any) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": body, **extra})

    async def state(self, room_id: str, etype: str, content: dict[str, Any], key: str = "") -> str:
        path = f"v3/rooms/{quote(room_id)}/state/{etype}/{quote(key)}"
        return str((await self.call("PUT", path, content))["event_id"])

    async def redact(self, room_id: str, event_id: str) -> str:
        path = f"v3/rooms/{quote(room_id)}/redact/{quote(event_id)}/r{next(_txn)}"
        return str((await self.call("PUT", path, {}))["event_id"])

    async def event(self, room_id: str, event_id: str) -> dict[str, Any]:
        data = await self.call("GET", f"v3/rooms/{quote(room_id)}/event/{quote(event_id)}")
        assert isinstance(data, dict)
        return data


async def login(http: aiohttp.ClientSession, client_url: str) -> Client:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
    }
    async with http.post(f"{client_url}/_matrix/client/v3/login", json=body) as r:
        assert r.status == 200, await r.text()
        token = str((await r.json())["access_token"])
    return Client(http, client_url, token)


def relations_of(event: dict[str, Any]) -> dict[str, Any]:
    return dict(event.get("unsigned", {}).get("m.relations", {}))
