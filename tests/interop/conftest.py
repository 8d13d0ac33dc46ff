"""Fixtures for interop tests: a real Synapse and real ``croft run`` processes on loopback.

Every test under tests/interop is marked ``interop`` (``pytest -m "not interop"`` skips
them). The first use installs Synapse into a cached venv (see tests/interop/synapse_install.py).
If that install fails because the package index cannot be reached and no install is
cached, the tests are skipped, except in CI (env ``CI`` set) where they fail.

    async def test_x(synapse: SynapseServer, croft: CroftProcess) -> None:
        user_id, token, _ = await synapse.register("bob", "pw")
        status, body = await synapse.request("POST", "/_matrix/client/v3/createRoom", {}, token)

More than one server: ``await synapse_factory()`` / ``await croft_factory()`` (keyword
arguments go to SynapseServer / CroftProcess); all are stopped at teardown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.interop.croft_node import CroftProcess
from tests.interop.synapse import SynapseServer
from tests.interop.synapse_install import (
    SynapseInstall,
    SynapseUnavailable,
    ensure_synapse,
    installed,
    venv_path,
)
from tests.interop.util import free_port as _free_port

# Read at import: tests/conftest.py removes CROFT_* variables while each test runs.
_VENV = venv_path()
_IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
_HERE = Path(__file__).resolve().parent
# A cold install (venv + pip) runs inside the first interop test's set-up.
_COLD_INSTALL_TIMEOUT = 1200

SynapseFactory = Callable[..., Awaitable[SynapseServer]]
CroftFactory = Callable[..., Awaitable[CroftProcess]]


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cold = installed(_VENV) is None
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.interop)
            if cold and item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(_COLD_INSTALL_TIMEOUT))


@pytest.fixture(scope="session")
def synapse_install(request: pytest.FixtureRequest) -> SynapseInstall:
    """Synapse installed in the cached venv (installed now if needed, with progress)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        if capture is not None and installed(_VENV) is None:
            with capture.global_and_fixture_disabled():  # show the progress lines
                return ensure_synapse(_VENV, progress=sys.stderr)
        return ensure_synapse(_VENV)
    except SynapseUnavailable as e:
        if _IN_CI:
            raise
        first_line = str(e).splitlines()[0]
        pytest.skip(f"Synapse not installed and the package index is unreachable ({first_line})")


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free loopback TCP port (also importable from
    tests.interop.util)."""
    return _free_port


@pytest.fixture
async def synapse_factory(
    synapse_install: SynapseInstall, tmp_path: Path
) -> AsyncIterator[SynapseFactory]:
    """``await synapse_factory(name="hs", **SynapseServer kwargs)``: a started Synapse."""
    servers: list[SynapseServer] = []

    async def start(name: str | None = None, **kw: Any) -> SynapseServer:
        server = SynapseServer(synapse_install, tmp_path / (name or f"synapse{len(servers)}"), **kw)
        servers.append(server)
        return await server.start()

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()


@pytest.fixture
async def synapse(synapse_factory: SynapseFactory) -> SynapseServer:
    """A started Synapse (room version 12 by default) in a temporary directory."""
    return await synapse_factory("synapse")


@pytest.fixture
async def croft_factory(tmp_path: Path) -> AsyncIterator[CroftFactory]:
    """``await croft_factory(name="croft", **CroftProcess kwargs)``: a started croft run."""
    nodes: list[CroftProcess] = []

    async def start(name: str | None = None, **kw: Any) -> CroftProcess:
        node = CroftProcess(tmp_path / (name or f"croft{len(nodes)}"), **kw)
        nodes.append(node)
        return await node.start()

    try:
        yield start
    finally:
        for node in nodes:
            await node.stop()


@pytest.fixture
async def croft(croft_factory: CroftFactory) -> CroftProcess:
    """A started ``croft run`` with its default configuration (owner alice). Settings go
    through the environment: ``croft_factory(env={"CROFT_FEDERATION_...": ...})``."""
    return await croft_factory("croft")
