"""Fixtures: the owner logged in on a real node (tests/relations/client.py)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.relations.client import Client, login


@pytest.fixture
async def owner(client_url: str, http: aiohttp.ClientSession) -> Client:
    return await login(http, client_url)
