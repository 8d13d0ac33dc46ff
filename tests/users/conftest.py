"""Fixtures for the users tests: a logged-in owner on a real node, and a JSON caller."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import OWNER, PASSWORD, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"


async def login(http: aiohttp.ClientSession, client_url: str, device_id: str) -> str:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
        "device_id": device_id,
    }
    async with http.post(f"{client_url}/_matrix/client/v3/login", json=body) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["access_token"])


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None,
    body: Any = None,
    status: int = 200,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as r:
        data = await r.json()
        assert r.status == status, data
        return data


@pytest.fixture
async def token(client_url: str, http: aiohttp.ClientSession) -> str:
    return await login(http, client_url, "DEV1")


@pytest.fixture
def v3(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v3"
