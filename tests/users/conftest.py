"""Fixtures for the users tests: a logged-in owner on a real node, and a JSON caller."""

from __future__ import annotations

import pytest

from tests.client import call, login  # noqa: F401  (re-exported for tests/users)
from tests.conftest import OWNER, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"


@pytest.fixture
def v3(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v3"
