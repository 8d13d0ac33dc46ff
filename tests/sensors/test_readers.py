"""Reading the three kinds of source for real: files, processes, entry points."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from node.config import SensorSource
from node.sensors.content import format_value
from node.sensors.readers import ReadError, make_reader
from tests.sensors.plugins import make_plugin_dist

ROOM = "#sensors:127.0.0.1:8448"


def source(kind: str, **fields: object) -> SensorSource:
    return SensorSource(id="t", kind=kind, room=ROOM, **fields)  # type: ignore[arg-type]


async def value_of(src: SensorSource) -> str:
    return format_value((await make_reader(src).read()).value)


async def test_file_with_scale(tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.write_text("42125\n")
    assert await value_of(source("file", path=str(temp), scale="0.001")) == "42.125"
    temp.write_text('{"value": 7, "unit": "V", "ts": 12}')
    reading = await make_reader(source("file", path=str(temp))).read()
    assert (reading.value, reading.unit, reading.ts) == (Decimal(7), "V", 12)


async def test_file_failures(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ReadError, match=f"{missing}: No such file or directory"):
        await make_reader(source("file", path=str(missing))).read()
    (tmp_path / "bad").write_text("hot")
    with pytest.raises(ReadError, match="not a reading: not a number"):
        await make_reader(source("file", path=str(tmp_path / "bad"))).read()
    with pytest.raises(ReadError, match="Is a directory"):
        await make_reader(source("file", path=str(tmp_path))).read()


async def test_command_argv_and_shell() -> None:
    argv = (sys.executable, "-c", "print(21.5)")
    assert await value_of(source("command", command=argv)) == "21.5"
    shell = source("command", command=('echo \'{"value": 3, "unit": "%"}\'',), shell=True)
    reading = await make_reader(shell).read()
    assert (reading.value, reading.unit) == (3, "%")
    scaled = source("command", command=("echo 1500",), shell=True, scale="0.001")
    assert await value_of(scaled) == "1.5"


async def test_command_failures(tmp_path: Path) -> None:
    failing = source("command", command=("echo boom >&2; exit 3",), shell=True)
    with pytest.raises(ReadError, match="exit status 3: boom"):
        await make_reader(failing).read()
    with pytest.raises(ReadError, match="cannot run '/no/such/tool'"):
        await make_reader(source("command", command=("/no/such/tool",))).read()
    with pytest.raises(ReadError, match="output is not a reading"):
        await make_reader(source("command", command=("echo hello",), shell=True)).read()


async def test_command_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hung = source(
        "command",
        command=(f"sleep 60 & echo $! > {pid_file}; wait",),
        shell=True,
        timeout=0.5,
    )
    with pytest.raises(ReadError, match=r"no answer within 0\.5 s"):
        await make_reader(hung).read()
    child = int(pid_file.read_text())
    for _ in range(200):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child), "the command's child outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its parent, the killed shell, is gone: init reaps it).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = make_plugin_dist(tmp_path / "site")
    monkeypatch.syspath_prepend(str(path))
    yield path
    sys.modules.pop("croft_test_plugin", None)


async def test_plugins_sync_async_and_options(plugin_path: Path) -> None:
    reader = make_reader(source("plugin", entry_point="temperature", options=(("offset", 10),)))
    first, second = await reader.read(), await reader.read()
    assert (first.value, first.unit) == (Decimal("30.25"), "°C")
    assert second.value == Decimal("30.5")  # loaded once: the module's counter goes on
    assert await value_of(source("plugin", entry_point="humidity")) == "55"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("broken", "raised OSError: i2c bus 1: no ACK"),
        ("garbage", "returned no reading: not a number"),
        ("not-callable", "is not callable"),
        ("missing-module", "does not load: No module named 'croft_no_such_module'"),
        ("absent", "no entry point 'absent' in group croft.sensors"),
    ],
)
async def test_plugin_failures(plugin_path: Path, name: str, fragment: str) -> None:
    with pytest.raises(ReadError) as e:
        await make_reader(source("plugin", entry_point=name)).read()
    assert fragment in str(e.value)


async def test_a_slow_plugin_times_out_and_is_not_called_twice(plugin_path: Path) -> None:
    reader = make_reader(
        source("plugin", entry_point="slow", options=(("seconds", 2.0),), timeout=0.2)
    )
    with pytest.raises(ReadError, match=r"no answer within 0\.2 s"):
        await reader.read()
    with pytest.raises(ReadError, match="previous call has not returned"):
        await reader.read()
