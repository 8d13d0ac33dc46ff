"""Sensors in real `croft run` processes (loopback only, discovery off): a plugin found
through PYTHONPATH, the queue across a SIGKILL and a restart, and `croft publish` with
the node running and stopped.

Every process started here is killed in a ``finally`` (the ``start`` fixture)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.sensors.plugins import make_plugin_dist
from tests.test_cli import (
    DEADLINE,
    PASSWORD,
    RunningCroft,
    clean_env,
    croft,
    croft_command,
    http_json,
    login,
)

SERVER = "127.0.0.1:8448"
USER = f"@alice:{SERVER}"
ALIAS = f"#sensors:{SERVER}"
READING = "io.croft.sensor.reading"
V3 = "/_matrix/client/v3"


# -- fixtures and helpers --------------------------------------------------------------------


class Client:
    """The owner, logged in over the client API of a running node."""

    def __init__(self, node: RunningCroft) -> None:
        self.base = node.client
        status, body = login(self.base, "alice", PASSWORD)
        assert status == 200, body
        self.headers = {"Authorization": f"Bearer {body['access_token']}"}

    def __call__(self, path: str, body: dict[str, Any] | None = None) -> Any:
        status, answer = http_json(f"{self.base}{V3}{path}", body, self.headers)
        assert status == 200, (path, answer)
        return answer

    def create_room(self, alias: str | None = "sensors") -> str:
        body: dict[str, Any] = {"preset": "public_chat"}
        if alias:
            body["room_alias_name"] = alias
        return str(self("/createRoom", body)["room_id"])

    def events(self, room_id: str, etype: str = READING) -> list[dict[str, Any]]:
        """Every event of type ``etype`` in the room, oldest first (/messages, paged)."""
        room = urllib.parse.quote(room_id)
        out: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self(
                f"/rooms/{room}/messages?dir=b&limit=500" + (f"&from={token}" if token else "")
            )
            out += [e for e in page["chunk"] if e["type"] == etype]
            if not page["chunk"] or "end" not in page:
                return list(reversed(out))
            token = page["end"]


def wait_for(what: str, check: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {deadline} s")


def add_sensors(data_dir: Path, settings: str, sources: str) -> None:
    """Put settings under the [sensors] table of config.toml and append sources."""
    path = data_dir / "config.toml"
    text = path.read_text("utf-8").replace("\n[sensors]\n", f"\n[sensors]\n{settings}\n", 1)
    path.write_text(text + "\n" + sources, "utf-8")


def queue_state(data_dir: Path) -> tuple[int, dict[str, int]]:
    """(rows queued, last seq per source), read from the node's database."""
    db = sqlite3.connect(f"file:{data_dir / 'croft.db'}?mode=ro", uri=True, timeout=10)
    try:
        (depth,) = db.execute("SELECT COUNT(*) FROM sensor_queue").fetchone()
        seqs = dict(db.execute("SELECT source_id, last_seq FROM sensor_seq").fetchall())
    finally:
        db.close()
    return int(depth), seqs


def sensors_env(**extra: str) -> dict[str, str]:
    return clean_env(CROFT_FEATURES_SENSORS="true", **extra)


# -- plugins -----------------------------------------------------------------------------------


def test_a_plugin_found_on_pythonpath_publishes(
    data_dir: Path, tmp_path: Path, start: Callable[..., RunningCroft]
) -> None:
    node = start(data_dir)
    room_id = Client(node).create_room()
    node.stop()
    add_sensors(
        data_dir,
        "rate_per_room = 1000.0",
        f"""
[[sensors.source]]
id = "temp"
kind = "plugin"
entry_point = "temperature"
options = {{ offset = 1 }}
interval = 0.1
room = "{ALIAS}"

[[sensors.source]]
id = "hum"
kind = "plugin"
entry_point = "humidity"
unit = "%"
type = "io.croft.sensor.humidity"
interval = 0.1
room = "{room_id}"
""",
    )
    env = sensors_env()
    plugins = make_plugin_dist(tmp_path / "plugins")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugins), env.get("PYTHONPATH")) if p)
    client = Client(node := start(data_dir, env=env))
    temps = wait_for("3 temperatures", lambda: (e := client.events(room_id))[2:] and e)
    assert [e["content"]["value"] for e in temps[:3]] == ["21.25", "21.5", "21.75"]
    assert {e["content"]["unit"] for e in temps} == {"°C"}
    hums = wait_for("humidity", lambda: client.events(room_id, "io.croft.sensor.humidity"))
    assert (hums[0]["content"]["value"], hums[0]["content"]["unit"]) == ("55", "%")
    assert "sensors: 2 source(s) (temp, hum)" in node.output


# -- the queue across SIGKILL -------------------------------------------------------------------


def test_the_queue_survives_sigkill_nothing_lost_nothing_twice(
    data_dir: Path, tmp_path: Path, start: Callable[..., RunningCroft]
) -> None:
    node = start(data_dir)
    room_id = Client(node).create_room()
    node.stop()
    reading = tmp_path / "reading"
    reading.write_text("7")
    # 100 readings/s against 40 events/s: a backlog builds up in the queue.
    add_sensors(
        data_dir,
        "rate_per_room = 40.0\nburst_per_room = 10",
        f"""
[[sensors.source]]
id = "fast"
kind = "file"
path = "{reading}"
interval = 0.01
room = "{ALIAS}"
""",
    )
    node = start(data_dir, env=sensors_env())
    client = Client(node)
    wait_for("30 readings published", lambda: len(client.events(room_id)) >= 30)
    wait_for("a backlog of 20", lambda: queue_state(data_dir)[0] >= 20)
    assert node.stop(signal.SIGKILL) == -signal.SIGKILL
    reading.unlink()  # from now on the source fails: the readings are those queued
    depth, seqs = queue_state(data_dir)
    taken = seqs["fast"]
    assert depth > 0
    print(f"at SIGKILL: {taken} readings taken, {depth} still queued")

    node = start(data_dir, env=sensors_env())
    client = Client(node)
    wait_for("the queue drained", lambda: queue_state(data_dir)[0] == 0)
    events = wait_for("every reading", lambda: (e := client.events(room_id))[taken - 1 :] and e)
    assert [e["content"]["seq"] for e in events] == list(range(1, taken + 1))
    assert queue_state(data_dir)[1]["fast"] == taken  # no reading taken after the restart
    assert "sensors: source fast (file) failed" in node.output


# -- croft publish -------------------------------------------------------------------------------


def publish(
    data_dir: Path, room: str, etype: str, content: str
) -> subprocess.CompletedProcess[str]:
    return croft(
        "publish", "--data-dir", data_dir, room, "--type", etype, content, cwd=data_dir.parent
    )


def test_publish_with_the_node_running(data_dir: Path, start: Callable[..., RunningCroft]) -> None:
    node = start(data_dir)
    client = Client(node)
    room_id = client.create_room()
    content = {"sensor_id": "cron", "value": "1.5", "unit": "V", "ts": 1719830400123}
    result = publish(data_dir, ALIAS, READING, json.dumps(content))
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip()
    assert event_id.startswith("$") and "\n" not in event_id
    event = client(f"/rooms/{urllib.parse.quote(room_id)}/event/{urllib.parse.quote(event_id)}")
    assert (event["type"], event["content"], event["sender"]) == (READING, content, USER)
    # From stdin, any event type, by room ID.
    message = {"msgtype": "m.text", "body": "backup done"}
    result = subprocess.run(
        [*croft_command(), "publish", "--data-dir", str(data_dir), room_id, "--type",
         "m.room.message", "-"],
        env=clean_env(), input=json.dumps(message), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert client.events(room_id, "m.room.message")[-1]["content"] == message
    # A room the owner is not in: the node's refusal, in one line.
    other = "!nowhere:127.0.0.1:8448"
    result = publish(data_dir, other, READING, "{}")
    assert result.returncode == 2
    assert result.stderr.startswith("croft: error: the node refused: 403 M_FORBIDDEN")


def test_publish_with_the_node_stopped_queues_until_it_starts(
    data_dir: Path, start: Callable[..., RunningCroft]
) -> None:
    node = start(data_dir)
    room_id = Client(node).create_room()
    Client(node).create_room(alias="left")
    left_id = Client(node)("/directory/room/" + urllib.parse.quote(f"#left:{SERVER}"))["room_id"]
    Client(node)(f"/rooms/{urllib.parse.quote(left_id)}/leave", {})
    node.stop()

    result = publish(data_dir, ALIAS, READING, '{"sensor_id": "cron", "value": "2"}')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "queued\n"
    assert "not running" in result.stderr and "queued" in result.stderr
    for room, fragment in (
        (f"#left:{SERVER}", f"{USER} is not joined to #left:{SERVER}"),
        (f"#nothing:{SERVER}", f"no room alias #nothing:{SERVER} on this server"),
    ):
        refused = publish(data_dir, room, READING, "{}")
        assert refused.returncode == 2 and refused.stderr == f"croft: error: {fragment}\n"
    assert queue_state(data_dir)[0] == 1

    # The laptop profile: features.sensors is off, queued events are sent all the same.
    client = Client(start(data_dir))
    events = wait_for("the queued event", lambda: client.events(room_id))
    assert [e["content"] for e in events] == [{"sensor_id": "cron", "value": "2"}]
    wait_for("the queue drained", lambda: queue_state(data_dir)[0] == 0)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([ALIAS, "--type", READING, "[1, 2]"], "JSON must be an object {...}, got list"),
        ([ALIAS, "--type", READING, "{oops"], "JSON is not valid JSON"),
        ([ALIAS, "--type", READING, '{"value": 1.5}'], "JSON cannot be event content"),
        ([ALIAS, "--type", "a b", "{}"], "--type 'a b' is not a valid event type"),
        (["sensors", "--type", READING, "{}"], "ROOM 'sensors' is not a room ID"),
        ([ALIAS, "{}"], "the following arguments are required: --type"),
    ],
)
def test_publish_refuses_bad_arguments(data_dir: Path, args: list[str], fragment: str) -> None:
    result = croft("publish", "--data-dir", data_dir, *args, cwd=data_dir.parent)
    assert result.returncode == 2, result
    assert result.stderr.startswith("croft: error: ") and result.stderr.count("\n") == 1
    assert fragment in result.stderr, result.stderr
    assert queue_state(data_dir)[0] == 0


def test_publish_help_names_the_exit_statuses(tmp_path: Path) -> None:
    result = croft("publish", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for fragment in (
        "ROOM",
        "--type TYPE",
        "JSON",
        "0 sent or queued",
        "1 the node runs",
        "2 a bad",
    ):
        assert fragment in text, fragment
