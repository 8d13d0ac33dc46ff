"""A small client for tests that speak raw HTTP to a real node."""

from __future__ import annotations

from typing import Any

import aiohttp
import yarl

from tests.conftest import OWNER, PASSWORD


async def login(http: aiohttp.ClientSession, client_url: str, device_id: str | None = None) -> str:
    """Log the owner in (optionally as ``device_id``); return the access token."""
    body: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
    }
    if device_id is not None:
        body["device_id"] = device_id
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
    **params: str,
) -> Any:
    """One request; asserts the status and returns the JSON body. ``url`` is sent as
    written (percent-escapes kept), ``params`` become the query string."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(
        method, yarl.URL(url, encoded=True), json=body, params=params or None, headers=headers
    ) as r:
        data = await r.json()
        assert r.status == status, data
        return data
