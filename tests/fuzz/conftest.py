"""Module-scoped fixtures for the fuzzers: one real node (and one HTTP session) per module.

The shared fixtures in tests/conftest.py are function-scoped; a fuzz module sends
thousands of requests, so it starts a single node and runs every test on the
module's event loop (``loop_scope="module"``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from node.app import RunningNode, serve
from node.config import load_config
from node.datadir import init_data_dir
from tests.conftest import OWNER, PASSWORD, SERVER_NAME, LoopbackOnlyResolver


@pytest.fixture(scope="module")
def fuzz_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz") / "node"
    init_data_dir(
        d,
        server_name=SERVER_NAME,
        owner=OWNER,
        password=PASSWORD,
        client_listen="127.0.0.1:0",
        federation_listen="127.0.0.1:0",
    )
    return d


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_node(fuzz_data_dir: Path) -> AsyncIterator[RunningNode]:
    running = await serve(load_config(fuzz_data_dir, environ={}))
    # Fuzzed user IDs, aliases and server names must never reach past loopback.
    running.node.federation_client.resolver = LoopbackOnlyResolver()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="module")
def fuzz_url(fuzz_node: RunningNode) -> str:
    return f"http://{fuzz_node.listeners['client']}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session
