"""Helpers for push tests against a real node: the owner's token and JSON calls."""

from __future__ import annotations

import aiohttp
import pytest

from tests.client import call, login  # noqa: F401  (call: used by the push tests)
from tests.conftest import OWNER, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"


@pytest.fixture
async def token(client_url: str, http: aiohttp.ClientSession) -> str:
    return await login(http, client_url, "PUSHDEV")


@pytest.fixture
def v3(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v3"
