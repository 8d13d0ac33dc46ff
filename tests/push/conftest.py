"""Helpers for push tests against a real node: the owner's token and JSON calls."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import OWNER, PASSWORD, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"


@pytest.fixture
async def token(client_url: str, http: aiohttp.ClientSession) -> str:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
        "device_id": "PUSHDEV",
    }
    async with http.post(f"{client_url}/_matrix/client/v3/login", json=body) as r:
        return str((await r.json())["access_token"])


@pytest.fixture
def v3(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v3"


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str,
    body: Any = None,
    status: int = 200,
    **params: str,
) -> Any:
    async with http.request(
        method,
        url,
        json=body,
        params=params or None,
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        data = await r.json()
        assert r.status == status, data
        return data
