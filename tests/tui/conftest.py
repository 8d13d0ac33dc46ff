"""Fixtures for the TUI tests: a real in-process Croft node on loopback, its owner over
the client API, and the TUI app connected to it the way `croft tui` does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from node.app import RunningNode
from tests.federation.nodes import Client, croft_node
from tui.app import CroftApp
from tui.screens.chat import ChatScreen
from tui.session import local_connection
from tui.widgets import RoomList, Timeline

WITHIN = 20.0  # generous: a loaded 2-core machine
SYNC_MS = 500


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    async with croft_node(tmp_path, "a") as running:
        yield running


@pytest.fixture
async def owner(node: RunningNode) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        client = Client(http, node)
        await client.login()
        yield client


def make_app(node: RunningNode) -> CroftApp:
    # A short long-poll: the node's graceful stop waits for a /sync in flight.
    return CroftApp(local_connection(node.node.config.data_dir), sync_timeout_ms=SYNC_MS)


async def until(pilot: object, found: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {WITHIN} s: {what}")
        await asyncio.sleep(0.05)


def chat(app: CroftApp) -> ChatScreen:
    screen = app.screen
    assert isinstance(screen, ChatScreen), screen
    return screen


def timeline_text(app: CroftApp) -> list[str]:
    return app.screen.query_one(Timeline).texts()


def room_labels(app: CroftApp) -> list[str]:
    rooms = app.screen.query_one(RoomList)
    return [str(rooms.get_option_at_index(i).prompt) for i in range(rooms.option_count)]


async def ready(app: CroftApp, pilot: object) -> ChatScreen:
    await until(
        pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.synced.is_set(), "sync"
    )
    return chat(app)
