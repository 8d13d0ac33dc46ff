"""A real plugin distribution for tests: a package and a ``.dist-info`` directory with an
``entry_points.txt`` (the packaging "Entry points specification"), put on sys.path or
PYTHONPATH, found by ``importlib.metadata`` like an installed one."""

from __future__ import annotations

from pathlib import Path

PLUGIN_MODULE = """
import asyncio
import time

CALLS = {"n": 0}


def temperature(offset=0):
    CALLS["n"] += 1
    return {"value": 20 + offset + CALLS["n"] / 4, "unit": "°C"}


async def humidity():
    await asyncio.sleep(0)
    return 55


def broken():
    raise OSError("i2c bus 1: no ACK")


def garbage():
    return "warm"


def slow(seconds=5.0):
    time.sleep(seconds)
    return 1


NOT_CALLABLE = 42
"""

ENTRY_POINTS = """
[croft.sensors]
temperature = croft_test_plugin:temperature
humidity = croft_test_plugin:humidity
broken = croft_test_plugin:broken
garbage = croft_test_plugin:garbage
slow = croft_test_plugin:slow
not-callable = croft_test_plugin:NOT_CALLABLE
missing-module = croft_no_such_module:read
"""


def make_plugin_dist(root: Path) -> Path:
    """Write the distribution under ``root``; return the directory for sys.path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "croft_test_plugin.py").write_text(PLUGIN_MODULE, "utf-8")
    info = root / "croft_test_plugin-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: croft-test-plugin\nVersion: 1.0\n", "utf-8"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS, "utf-8")
    return root
