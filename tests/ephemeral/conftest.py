"""Fixtures for the ephemeral tests: the owner logged in on two devices of a real node,
a JSON caller, and a room with a few messages."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from tests.client import call, login
from tests.conftest import OWNER, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"
# "Someone else": this single-user node has no second account and no federation yet,
# so another user's events go in through RoomService.send (see tests/push).
BOB = "@bob:remote.example"


async def raw_call(
    http: aiohttp.ClientSession, method: str, url: str, token: str, data: bytes
) -> tuple[int, Any]:
    """A request with a body that is not (or not quite) JSON."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with http.request(method, url, data=data, headers=headers) as r:
        return r.status, await r.json()


@pytest.fixture
def v3(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v3"


@pytest.fixture
async def token(client_url: str, http: aiohttp.ClientSession) -> str:
    return await login(http, client_url, "DEV1")


@pytest.fixture
async def token2(client_url: str, http: aiohttp.ClientSession) -> str:
    return await login(http, client_url, "DEV2")


async def send_text(
    http: aiohttp.ClientSession, v3: str, token: str, room_id: str, body: str, **extra: Any
) -> str:
    data = await call(
        http,
        "PUT",
        f"{v3}/rooms/{room_id}/send/m.room.message/{uuid.uuid4().hex}",
        token,
        {"msgtype": "m.text", "body": body, **extra},
    )
    return str(data["event_id"])


async def sync(
    http: aiohttp.ClientSession, v3: str, token: str, since: str | None = None, **params: str
) -> Any:
    if since is not None:
        params["since"] = since
    async with http.get(
        f"{v3}/sync", params=params, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        data = await r.json()
        assert r.status == 200, data
        return data


def ephemeral(response: Any, room_id: str) -> list[dict[str, Any]]:
    room = response.get("rooms", {}).get("join", {}).get(room_id, {})
    return list(room.get("ephemeral", {}).get("events", []))


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type]
