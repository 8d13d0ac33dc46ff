"""Sensor sources publishing into rooms of a real node (in this process, real SQLite,
real HTTP): readings seen over /sync with the documented content, a failing source
that does not stop the others, a room the owner is not in, and the crash window
between an event's commit and its row's removal."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.app import RunningNode, serve
from node.config import Config, SensorsConfig, SensorSource, load_config
from node.sensors.publisher import Publisher
from node.sensors.queue import SENSOR_DEVICE, SensorQueue
from node.sensors.service import SensorService
from node.storage.events import TxnKey
from tests.client import call, login
from tests.conftest import OWNER, SERVER_NAME

USER = f"@{OWNER}:{SERVER_NAME}"
ALIAS = f"#sensors:{SERVER_NAME}"
READING = "io.croft.sensor.reading"
DEADLINE = 20.0  # for anything to happen, on a loaded machine
V3 = "/_matrix/client/v3"


def sensor_config(data_dir: Path, sources: list[dict[str, Any]], **settings: Any) -> Config:
    return load_config(
        data_dir,
        environ={},
        overrides={
            "features": {"sensors": True},
            "sensors": {
                "rate_per_room": 1000.0,
                "burst_per_room": 1000,
                **settings,
                "source": sources,
            },
        },
    )


@pytest.fixture
async def start(data_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    running: list[RunningNode] = []

    async def _start(config: Config) -> RunningNode:
        node = await serve(config)
        running.append(node)
        return node

    yield _start
    for node in running:
        await node.stop()


async def create_room(
    http: aiohttp.ClientSession, url: str, token: str, alias: str | None = "sensors"
) -> str:
    body: dict[str, Any] = {"preset": "public_chat"}
    if alias:
        body["room_alias_name"] = alias
    return str((await call(http, "POST", f"{url}{V3}/createRoom", token, body))["room_id"])


async def readings_over_sync(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    room_id: str,
    done: Callable[[list[dict[str, Any]]], bool],
) -> list[dict[str, Any]]:
    """Sensor events of ``room_id`` as /sync delivers them, until ``done(events)``."""
    events: list[dict[str, Any]] = []
    since = None
    flt = urllib.parse.quote('{"room":{"timeline":{"limit":500}}}')
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        query = f"?timeout=1000&filter={flt}" + (f"&since={since}" if since else "")
        body = await call(http, "GET", f"{url}{V3}/sync{query}", token)
        since = body["next_batch"]
        room = body.get("rooms", {}).get("join", {}).get(room_id, {})
        timeline = room.get("timeline", {})
        assert not timeline.get("limited") or since is None or not events, "missed events"
        events += [e for e in timeline.get("events", []) if e["type"].startswith("io.croft.")]
        if done(events):
            return events
    raise AssertionError(f"/sync did not deliver the readings within {DEADLINE} s: {events}")


def by_sensor(events: list[dict[str, Any]], sensor: str) -> list[dict[str, Any]]:
    return [e["content"] for e in events if e["content"]["sensor_id"] == sensor]


def at_least(n: int, *sensors: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: all(len(by_sensor(events, s)) >= n for s in sensors)


async def test_file_and_command_sources_publish_over_sync(
    data_dir: Path, tmp_path: Path, http: aiohttp.ClientSession, start: Callable[..., Any]
) -> None:
    temp = tmp_path / "thermal_zone0_temp"
    temp.write_text("42500\n")
    volts = "import json; print(json.dumps({'value': 3.3, 'unit': 'V'}))"
    config = sensor_config(
        data_dir,
        [
            {
                "id": "cpu-temp",
                "kind": "file",
                "path": str(temp),
                "scale": 0.001,
                "unit": "°C",
                "interval": 0.1,
                "room": ALIAS,
            },
            {
                "id": "volts",
                "kind": "command",
                "command": [sys.executable, "-c", volts],
                "unit": "mV",  # the command's own unit wins
                "type": "io.croft.sensor.power",
                "interval": 0.1,
                "room": ALIAS,
            },
        ],
    )
    before = int(time.time() * 1000)
    running = await start(config)
    url = f"http://{running.listeners['client']}"
    token = await login(http, url)
    # The alias does not exist yet: readings wait in the queue until it does.
    room_id = await create_room(http, url, token)
    events = await readings_over_sync(http, url, token, room_id, at_least(5, "cpu-temp", "volts"))
    after = int(time.time() * 1000)

    for sensor, etype, value, unit in (
        ("cpu-temp", READING, "42.5", "°C"),
        ("volts", "io.croft.sensor.power", "3.3", "V"),
    ):
        mine = [e for e in events if e["content"]["sensor_id"] == sensor]
        assert {e["type"] for e in mine} == {etype}
        assert {e["sender"] for e in mine} == {USER}
        contents = [e["content"] for e in mine]
        for c in contents:
            assert set(c) == {"sensor_id", "value", "unit", "ts", "seq"}
            assert (c["value"], c["unit"]) == (value, unit)
            assert before <= c["ts"] <= after
        # Every reading, in order, from the first (taken before the room existed).
        assert [c["seq"] for c in contents] == list(range(1, len(contents) + 1))
    stats = running.sensors.stats()
    assert stats["sources"]["cpu-temp"]["failures"] == 0
    assert stats["sources"]["volts"]["readings"] >= 5


async def test_a_failing_source_is_retried_and_does_not_stop_the_others(
    data_dir: Path,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    start: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "node.sensors")
    good, later = tmp_path / "good", tmp_path / "later"
    good.write_text("1")
    sources = [
        {"id": "good", "kind": "file", "path": str(good), "interval": 0.05, "room": ALIAS},
        {"id": "later", "kind": "file", "path": str(later), "interval": 0.05, "room": ALIAS},
        {
            "id": "crash",
            "kind": "command",
            "command": "echo 'sensor on fire' >&2; exit 7",
            "interval": 0.05,
            "room": ALIAS,
        },
    ]
    running = await start(sensor_config(data_dir, sources))
    url = f"http://{running.listeners['client']}"
    token = await login(http, url)
    room_id = await create_room(http, url, token)
    await readings_over_sync(http, url, token, room_id, at_least(10, "good"))
    stats = running.sensors.stats()["sources"]
    assert stats["later"]["failures"] >= 2 and "No such file" in stats["later"]["last_error"]
    assert stats["crash"]["failures"] >= 2
    assert stats["crash"]["last_error"] == "exit status 7: sensor on fire"
    failures = [
        r.getMessage() for r in caplog.records if "source crash (command) failed" in r.getMessage()
    ]
    assert len(failures) == 1, failures  # logged once a minute at most
    # The missing file appears: that source works from its next interval on.
    later.write_text("2")
    events = await readings_over_sync(http, url, token, room_id, at_least(3, "later"))
    assert by_sensor(events, "later")[0]["seq"] == 1
    assert "sensors: source later reads again" in caplog.text


async def test_a_room_the_owner_left_keeps_its_readings_until_they_join(
    data_dir: Path, http: aiohttp.ClientSession, start: Callable[..., Any], tmp_path: Path
) -> None:
    running = await start(load_config(data_dir, environ={}))
    node = running.node
    url = f"http://{running.listeners['client']}"
    token = await login(http, url)
    room_id = await create_room(http, url, token, alias=None)
    await call(http, "POST", f"{url}{V3}/rooms/{room_id}/leave", token, {})
    (tmp_path / "v").write_text("5")
    source = SensorSource(
        id="v", kind="file", room=room_id, path=str(tmp_path / "v"), interval=0.05
    )
    service = SensorService(
        node.db, node.rooms, node.directory.resolve_alias, USER, SensorsConfig(), (source,)
    )
    await service.start()
    try:
        for _ in range(int(DEADLINE / 0.05)):
            if await service.queue_depth() >= 5:
                break
            await asyncio.sleep(0.05)
        assert await service.queue_depth() >= 5
        assert service.stats()["blocked_rooms"] == {room_id: f"{USER} is not joined to {room_id}"}
        await call(http, "POST", f"{url}{V3}/join/{room_id}", token, {})
        events = await readings_over_sync(http, url, token, room_id, at_least(8, "v"))
        assert [c["seq"] for c in by_sensor(events, "v")][:8] == list(range(1, 9))
    finally:
        await service.stop()


async def room_sensor_events(
    http: aiohttp.ClientSession, url: str, token: str, room: str
) -> list[dict[str, Any]]:
    body = await call(http, "GET", f"{url}{V3}/rooms/{room}/messages?dir=b&limit=1000", token)
    return [e for e in reversed(body["chunk"]) if e["type"] == READING]


async def test_a_row_whose_event_was_committed_is_not_sent_again(
    data_dir: Path, http: aiohttp.ClientSession, start: Callable[..., Any]
) -> None:
    """A crash between the commit of a row's event and the row's removal: at start the
    row is recognised by its transaction ID (forget_sent), and a send that still meets
    one gets the earlier event back, not a second one."""
    running = await start(load_config(data_dir, environ={}))
    node = running.node
    url = f"http://{running.listeners['client']}"
    token = await login(http, url)
    room_id = await create_room(http, url, token, alias=None)
    queue = SensorQueue(node.db, 100)
    for n in range(4):
        await queue.enqueue_reading("s", room_id, READING, {"sensor_id": "s", "n": n})
    rows = await queue.peek(room_id, 10)
    # Rows 0 and 1 were made events, then the node "died" before removing them.
    first = [
        await node.rooms.send(
            USER, room_id, READING, r.content, txn=TxnKey(USER, SENSOR_DEVICE, r.txn_id)
        )
        for r in rows[:2]
    ]
    assert await queue.forget_sent(USER) == 2
    # Row 2 was also sent, but its removal is what a send meets (no forget_sent first).
    third = await node.rooms.send(
        USER, room_id, READING, rows[2].content, txn=TxnKey(USER, SENSOR_DEVICE, rows[2].txn_id)
    )
    node.rooms._txns_recent.clear()  # as after a restart: only the store knows the txn
    pub = Publisher(queue, node.rooms, node.directory.resolve_alias, USER, 1000, 1000)
    assert await pub.publish_once() == (2, None)
    assert await queue.depth() == 0
    events = await room_sensor_events(http, url, token, room_id)
    assert [e["content"]["seq"] for e in events] == [1, 2, 3, 4]
    assert [e["event_id"] for e in events[:3]] == [*first, third]


async def test_wait_idle_and_queue_depth_for_callers(
    data_dir: Path, http: aiohttp.ClientSession, start: Callable[..., Any]
) -> None:
    """The interface tests and benchmarks use: queue rows, start, wait until sent."""
    running = await start(load_config(data_dir, environ={}))
    node = running.node
    url = f"http://{running.listeners['client']}"
    token = await login(http, url)
    room_id = await create_room(http, url, token, alias=None)
    settings = SensorsConfig(rate_per_room=0.5, burst_per_room=100)
    service = SensorService(node.db, node.rooms, node.directory.resolve_alias, USER, settings, ())
    for n in range(150):  # more than a burst of 100: the rest waits for tokens (0.5/s)
        await service.queue.enqueue_event(room_id, READING, {"n": n})
    assert await service.queue_depth() == 150
    await service.start()
    try:
        await service.wait_idle()
        assert 0 < await service.queue_depth() <= 50
        assert service.stats()["sent"] >= 100
    finally:
        await service.stop()
    events = await room_sensor_events(http, url, token, room_id)
    assert [e["content"]["n"] for e in events] == list(range(len(events)))
