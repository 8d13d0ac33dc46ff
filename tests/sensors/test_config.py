"""The [sensors] section and [[sensors.source]] tables: what loads, and one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from node.config import ConfigError, SensorSource, load_config, render_config_file

BASE = 'server_name = "pi.local"\nprofile = "iot-sensor"\n'
FILE_SOURCE = """
[[sensors.source]]
id = "cpu-temp"
kind = "file"
path = "/sys/class/thermal/thermal_zone0/temp"
scale = 0.001
unit = "°C"
interval = 0.01
room = "#sensors:pi.local"
"""


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    (tmp_path / "config.toml").write_text(BASE + text, "utf-8")
    return load_config(tmp_path, environ=environ or {})


def test_sources_and_settings_load(tmp_path: Path) -> None:
    text = (
        "[sensors]\nrate_per_room = 2.5\nburst_per_room = 7\nqueue_cap = 50\n"
        + FILE_SOURCE
        + """
[[sensors.source]]
id = "load"
kind = "command"
command = "cut -d' ' -f1 /proc/loadavg"
room = "!abc:pi.local"
timeout = 2

[[sensors.source]]
id = "argv"
kind = "command"
command = ["/bin/echo", "1"]
room = "#s:pi.local"

[[sensors.source]]
id = "air"
kind = "plugin"
entry_point = "bme280"
options = { address = 118, bus = "i2c-1" }
type = "io.croft.sensor.air"
room = "#s:pi.local"
"""
    )
    cfg = load(tmp_path, text)
    s = cfg.sensors
    assert (s.rate_per_room, s.burst_per_room, s.queue_cap) == (2.5, 7, 50)
    temp, shell, argv, air = s.source
    assert temp == SensorSource(
        id="cpu-temp",
        kind="file",
        room="#sensors:pi.local",
        interval=0.01,
        unit="°C",
        scale="0.001",
        path="/sys/class/thermal/thermal_zone0/temp",
    )
    assert temp.type == "io.croft.sensor.reading" and temp.timeout == 10.0
    assert shell.shell and shell.command == ("cut -d' ' -f1 /proc/loadavg",)
    assert shell.interval == 60.0 and shell.timeout == 2.0
    assert not argv.shell and argv.command == ("/bin/echo", "1")
    assert air.entry_point == "bme280" and dict(air.options) == {"address": 118, "bus": "i2c-1"}
    assert air.type == "io.croft.sensor.air"
    assert cfg.features.sensors is True  # the iot-sensor profile


def test_defaults_and_environment(tmp_path: Path) -> None:
    cfg = load(tmp_path, "", {"CROFT_SENSORS_RATE_PER_ROOM": "0.5", "CROFT_SENSORS_QUEUE_CAP": "9"})
    assert cfg.sensors.rate_per_room == 0.5
    assert cfg.sensors.queue_cap == 9
    assert cfg.sensors.burst_per_room == 100
    assert cfg.sensors.source == ()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _source(**fields: object) -> str:
    """A [[sensors.source]] table: a valid file source, changed by ``fields`` (None: left out)."""
    table = {"id": "t", "kind": "file", "path": "/x", "room": "#r:pi.local", **fields}
    lines = ["[[sensors.source]]"]
    lines += [f"{key} = {_toml(value)}" for key, value in table.items() if value is not None]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (_source(colour="red"), "sensors.source[0] (t): unknown key 'colour'"),
        (_source(kind="serial"), "kind must be one of command, file, plugin"),
        (_source(room=None), "room is missing"),
        (_source(room="sensors"), "is not a room ID or alias"),
        (_source(room="#nodomain"), "is not a room ID or alias"),
        (_source(interval=0.001), "interval must be a number of seconds >= 0.01"),
        (_source(interval=0), "interval must be a number of seconds >= 0.01"),
        (_source(interval="fast"), "interval must be a number"),
        (_source(timeout=0), "timeout must be a number of seconds"),
        (_source(type="m.room.message"), "must be under io.croft.sensor."),
        (_source(type="io.croft.sensor."), "must be under io.croft.sensor."),
        (_source(type="io.croft.sensor.a b"), "must be under io.croft.sensor."),
        (_source(scale=0), "scale must be a non-zero number"),
        (_source(scale="lots"), "scale must be a non-zero number"),
        (_source(path=None), "kind 'file' needs 'path'"),
        (_source(path=""), "path must be a non-empty string"),
        (_source(command="echo 1"), "'command' is for kind 'command', not 'file'"),
        (_source(kind="command", path=None), "command must be a string"),
        (_source(kind="plugin", path=None), "kind 'plugin' needs 'entry_point'"),
        (_source(id="a b"), "id must be 1-64 characters"),
        (_source(unit="x" * 33), "unit is longer than 32"),
        (_source() + _source(), "id 't' is used by more than one source"),
        ("[sensors]\nsource = 3\n", "sensors.source must be an array of tables"),
        ("[sensors]\nrate_per_room = 0\n", "sensors.rate_per_room must be a number"),
        ("[sensors]\nrate_per_room = true\n", "sensors.rate_per_room must be a number"),
        ("[sensors]\nqueue_cap = 0\n", "sensors.queue_cap must be at least 1"),
        ("[sensors]\nburst_per_room = 0\n", "sensors.burst_per_room must be at least 1"),
        ("[sensors]\nspeed = 1\n", "unknown key 'sensors.speed'"),
    ],
)
def test_bad_sensor_config_is_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    message = str(e.value)
    assert "\n" not in message
    assert fragment in message, message


def test_options_only_for_plugins(tmp_path: Path) -> None:
    text = _source() + "options = { a = 1 }\n"
    with pytest.raises(ConfigError, match="'options' is for kind 'plugin'"):
        load(tmp_path, text)


def test_rendered_example_is_valid_once_uncommented(tmp_path: Path) -> None:
    """The commented [[sensors.source]] examples of `croft init`'s config load as is."""
    rendered = render_config_file("pi.local", "iot-sensor", None, None)
    section = rendered.split("\n[sensors]\n", 1)[1].split("\n[voip]", 1)[0]
    example = "\n".join(
        line[2:] for line in section.splitlines() if re.match(r"# (\[\[|[a-z_]+ = )", line)
    )
    example = "\n".join(
        line for line in example.splitlines() if not line.startswith(("rate", "burst", "queue"))
    )
    (tmp_path / "config.toml").write_text(
        rendered.replace("\n[sensors]\n", "\n[sensors]\n" + example + "\n", 1), "utf-8"
    )
    cfg = load_config(tmp_path, environ={})
    assert [s.id for s in cfg.sensors.source] == ["cpu-temp", "load", "air"]
    assert [s.kind for s in cfg.sensors.source] == ["file", "command", "plugin"]
