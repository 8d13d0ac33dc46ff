"""Device profiles (device_profiles/*.toml) reach the running node.

Each profile sets the history budgets, the SQLite cache, presence, the federation
concurrency, the upload limit and which optional parts load. These tests read each
profile file and start a real node with it in this process (real SQLite file, real
listeners on loopback, LAN discovery not started), then check every value where the
node uses it: the PRAGMA of each database connection, the number of outbound
federation requests in flight against a real TLS server, what the presence endpoints
and /voip/turnServer answer, the media config, the history cache's budgets, whether
the sensor service runs. Which modules a `croft run` process loads is
tests/test_lean.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from node.app import RunningNode, serve
from node.config import available_profiles, load_config, render_config_file
from node.federation.tls import server_ssl_context
from node.history.cache import Budget
from tests.client import call, login
from tests.conftest import OWNER, SERVER_NAME

PROFILES = ("laptop", "raspberry-pi", "iot-sensor")
PROFILES_DIR = Path(__file__).resolve().parent.parent / "device_profiles"
DEADLINE = 20.0  # for anything to happen, on a loaded 2-core machine
ME = f"@{OWNER}:{SERVER_NAME}"

# What every profile must decide for its device (issue #6, "Profiles in full").
PROFILE_KEYS = {
    "federation": {"listen", "max_concurrency"},
    "client": {"listen"},
    "storage": {"sqlite_cache_kib"},
    "history": {"max_timeline_events_per_room", "max_store_bytes"},
    "media": {"max_upload_bytes"},
    "presence": {"enabled"},
    "features": {"discovery", "sensors", "calls"},
}


def profile_file(name: str) -> dict[str, Any]:
    return tomllib.loads((PROFILES_DIR / f"{name}.toml").read_text("utf-8"))


# -- the files ---------------------------------------------------------------------------


def test_the_three_profiles_are_shipped() -> None:
    assert set(PROFILES) <= set(available_profiles())


@pytest.mark.parametrize("name", PROFILES)
def test_each_profile_decides_every_device_setting(name: str) -> None:
    data = profile_file(name)
    for section, keys in PROFILE_KEYS.items():
        missing = keys - set(data.get(section, {}))
        assert not missing, f"{name}.toml does not set {section}.{sorted(missing)}"


def test_smaller_devices_get_smaller_budgets() -> None:
    laptop, pi, sensor = (profile_file(n) for n in PROFILES)
    for section, key in (
        ("history", "max_timeline_events_per_room"),
        ("history", "max_store_bytes"),
        ("storage", "sqlite_cache_kib"),
        ("federation", "max_concurrency"),
        ("media", "max_upload_bytes"),
    ):
        values = [p[section][key] for p in (sensor, pi, laptop)]
        assert values == sorted(values) and values[0] < values[-1], (section, key, values)
    # A sensor board runs no calls and no presence; it publishes readings.
    assert sensor["features"] == {"discovery": True, "sensors": True, "calls": False}
    assert sensor["presence"]["enabled"] is False
    assert laptop["features"]["sensors"] is False and laptop["presence"]["enabled"] is True


@pytest.mark.parametrize("name", PROFILES)
def test_config_file_shows_the_profile_values(name: str) -> None:
    """`croft init --profile NAME` writes a config.toml whose commented lines show what
    the profile sets (not the laptop's built-in defaults)."""
    text = render_config_file("sensor1.local", name, None, None)
    assert tomllib.loads(text)["profile"] == name
    shown: dict[str, dict[str, Any]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and not line.startswith("[["):
            section = line.strip("[]")
        elif line.startswith("# ") and " = " in line:
            # "# key = value   # comment": uncomment and read it as TOML.
            entry = tomllib.loads(line[2:].split("  #")[0])
            shown.setdefault(section, {}).update(entry)
    for section, values in profile_file(name).items():
        for key, value in values.items():
            assert shown[section][key] == value, (section, key)


# -- a real node per profile ---------------------------------------------------------------

TURN = {"turn_uris": ["turn:turn.example.org:3478?transport=udp"], "turn_shared_secret": "s3"}


@pytest.fixture(params=PROFILES)
async def profiled(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[RunningNode]:
    """The node of conftest's data directory, run with the profile (as `croft run
    --profile NAME` does) and TURN configured (so /voip/turnServer shows features.calls)."""
    config = load_config(data_dir, environ={}, overrides={"profile": request.param, "voip": TURN})
    assert config.profile == request.param
    running = await serve(config)
    try:
        yield running
    finally:
        await running.stop()


def expected(running: RunningNode) -> dict[str, Any]:
    return profile_file(running.node.config.profile)


async def test_sqlite_cache_of_every_connection(profiled: RunningNode) -> None:
    kib = expected(profiled)["storage"]["sqlite_cache_kib"]
    db = profiled.node.db

    def cache_size(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA cache_size").fetchone()[0])

    # Negative: a size in KiB (https://sqlite.org/pragma.html#pragma_cache_size).
    assert await db.write_sync(cache_size) == -kib  # the writer
    assert await db.read_sync(cache_size) == -kib  # the reader thread
    # The reader on the event loop's thread (short hot-path reads) gets a quarter.
    assert await db.read_now(cache_size) == -max(1024, kib // 4)


async def test_history_budgets(profiled: RunningNode) -> None:
    history = expected(profiled)["history"]
    cache = profiled.node.history
    assert cache.room_budget == Budget.of(history["max_timeline_events_per_room"])
    assert cache.store_budget == Budget.of(history["max_store_bytes"])
    # Media uploads are refused past the same store budget.
    assert profiled.node.media.max_store_bytes == history["max_store_bytes"]


async def test_upload_limit_is_announced(profiled: RunningNode) -> None:
    url = f"http://{profiled.listeners['client']}/_matrix/client/v1/media/config"
    async with aiohttp.ClientSession() as http:
        token = await login(http, f"http://{profiled.listeners['client']}")
        answer = await call(http, "GET", url, token)
    assert answer == {"m.upload.size": expected(profiled)["media"]["max_upload_bytes"]}


async def test_presence(profiled: RunningNode) -> None:
    """On: PUT sets it, GET reads it back, the change goes to the federation side
    (PresenceService.on_change feeds outbound m.presence EDUs) and an idle timer is
    armed. Off: PUT is accepted and changes nothing, GET says offline, no EDU, no timer."""
    enabled = expected(profiled)["presence"]["enabled"]
    presence = profiled.node.presence
    changes: list[str] = []
    presence.on_change.append(changes.append)
    client = f"http://{profiled.listeners['client']}"
    url = f"{client}/_matrix/client/v3/presence/{ME}/status"
    async with aiohttp.ClientSession() as http:
        token = await login(http, client)
        await call(http, "PUT", url, token, {"presence": "online", "status_msg": "here"})
        answer = await call(http, "GET", url, token)
        # A /sync that would bring the user online carries presence only when on.
        sync = await call(http, "GET", f"{client}/_matrix/client/v3/sync", token)
    if enabled:
        assert answer["presence"] == "online" and answer["status_msg"] == "here"
        assert changes == [ME]
        assert presence._timers, "no idle/offline timer armed"
        assert "presence" in sync
    else:
        assert answer == {"presence": "offline"}
        assert changes == []
        assert not presence._timers
        assert not sync.get("presence", {}).get("events")


async def test_turn_server_only_with_calls(profiled: RunningNode) -> None:
    client = f"http://{profiled.listeners['client']}"
    async with aiohttp.ClientSession() as http:
        token = await login(http, client)
        answer = await call(http, "GET", f"{client}/_matrix/client/v3/voip/turnServer", token)
    if expected(profiled)["features"]["calls"]:
        assert answer["uris"] == TURN["turn_uris"] and answer["username"].endswith(ME)
    else:
        assert answer == {}


async def test_sensor_service_runs_only_with_sensors(profiled: RunningNode) -> None:
    if expected(profiled)["features"]["sensors"]:
        assert profiled.sensors is not None
    else:
        assert profiled.sensors is None
    # In-process nodes never announce themselves (croft run asks for discovery).
    assert profiled.discovery is None


# -- federation concurrency ----------------------------------------------------------------


class HeldServer:
    """A TLS server on loopback that holds every request until released, counting how
    many are in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.arrived = 0
        self.release = asyncio.Event()
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.changed.set()
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return web.json_response({"server": {"name": "held", "version": "1"}})

    async def wait_for(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not check():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def held_server(data_dir: Path) -> AsyncIterator[tuple[HeldServer, int]]:
    server = HeldServer()
    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/version", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # The node's own self-signed certificate: servers named by an IP literal are not
    # checked (their identity is their signing key).
    ctx = server_ssl_context(data_dir / "tls.crt", data_dir / "tls.key")
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, port
    finally:
        server.release.set()
        await runner.cleanup()


async def test_federation_requests_in_flight(
    profiled: RunningNode, held_server: tuple[HeldServer, int]
) -> None:
    """federation.max_concurrency bounds the outbound requests in flight: with more
    requests than that, exactly that many reach the server until one is answered."""
    server, port = held_server
    limit = expected(profiled)["federation"]["max_concurrency"]
    client = profiled.node.federation_client
    destination = f"127.0.0.1:{port}"
    path = "/_matrix/federation/v1/version"
    waiting: list[Awaitable[Any]] = [
        asyncio.ensure_future(client.get_json(destination, path)) for _ in range(limit + 3)
    ]
    try:
        await server.wait_for(lambda: server.arrived >= limit)
        # Time for a request past the limit to arrive if nothing held it back.
        await asyncio.sleep(0.5)
        assert (server.arrived, server.in_flight) == (limit, limit)
        server.release.set()
        answers = await asyncio.wait_for(asyncio.gather(*waiting), DEADLINE)
    finally:
        server.release.set()
        for task in waiting:
            if isinstance(task, asyncio.Future):
                task.cancel()
    assert len(answers) == limit + 3
    assert server.arrived == limit + 3 and server.peak == limit
