"""process.pin_cpu (node/affinity.py): the choice of CPU as a table, then the pinning
itself in a fresh interpreter (never in the test process: its threads would inherit
the CPU). `croft run` processes are checked in tests/test_cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node.affinity import choose_cpu, current_cpu, valid_setting
from node.config import ConfigError, load_config
from node.datadir import init_data_dir


@pytest.mark.parametrize(
    ("setting", "allowed", "current", "expected"),
    [
        ("auto", {0, 1, 2, 3}, 2, 2),  # where the kernel had put the loop
        ("auto", {0, 1}, 0, 0),
        ("auto", {2, 5}, 5, 5),  # a process already limited (taskset, cgroups)
        ("auto", {2, 5}, None, 2),  # /proc unreadable: the first allowed
        ("auto", {2, 5}, 3, 2),  # a stale reading outside the allowed set
        ("auto", {0}, 0, None),  # one CPU: nothing to keep together
        ("off", {0, 1, 2, 3}, 1, None),
        ("2", {0, 1, 2, 3}, 0, 2),
        ("0", {0, 1}, 1, 0),
        ("4", {0, 1, 2, 3}, 0, None),  # not a CPU this process may use
        ("1", {1}, 1, None),
    ],
)
def test_choose_cpu(
    setting: str, allowed: set[int], current: int | None, expected: int | None
) -> None:
    assert choose_cpu(setting, allowed, current) == expected


def test_current_cpu_is_one_this_thread_may_use() -> None:
    cpu = current_cpu()
    if sys.platform == "linux":
        assert cpu is not None and cpu in os.sched_getaffinity(0)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("auto", True),
        ("off", True),
        ("0", True),
        ("15", True),
        ("", False),
        ("-1", False),
        ("1.5", False),
        ("AUTO", False),
        ("on", False),
        ("٣", False),
        ("1,2", False),
    ],
)
def test_valid_setting(value: str, ok: bool) -> None:
    assert valid_setting(value) is ok


def test_config_refuses_a_bad_setting(tmp_path: Path) -> None:
    d = tmp_path / "node"
    init_data_dir(d, server_name="example.test", owner="alice", password="x" * 12)
    assert load_config(d, environ={}).process.pin_cpu == "auto"
    assert load_config(d, environ={"CROFT_PROCESS_PIN_CPU": "0"}).process.pin_cpu == "0"
    with pytest.raises(ConfigError, match=r"process\.pin_cpu"):
        load_config(d, environ={"CROFT_PROCESS_PIN_CPU": "fast"})


PROBE = textwrap.dedent(
    """
    import asyncio, json, os, sys, threading
    from node.affinity import pin_event_loop

    async def main():
        cpu = pin_event_loop(sys.argv[1], asyncio.get_running_loop())
        seen = {}
        t = threading.Thread(target=lambda: seen.update(thread=sorted(os.sched_getaffinity(0))))
        t.start(); t.join()
        worker = await asyncio.to_thread(os.sched_getaffinity, 0)
        print(json.dumps({"cpu": cpu, "loop": sorted(os.sched_getaffinity(0)),
                          "thread": seen["thread"], "worker": sorted(worker)}))

    asyncio.run(main())
    """
)


def probe(setting: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, setting], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


linux_smp = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs per-thread CPU affinity (Linux) and at least two CPUs",
)


@linux_smp
def test_auto_pins_the_loop_and_threads_it_starts_but_not_the_executor() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    got = probe("auto")
    cpu = got["cpu"]
    assert cpu in allowed
    assert got == {"cpu": cpu, "loop": [cpu], "thread": [cpu], "worker": allowed}


@linux_smp
def test_a_named_cpu() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    got = probe(str(allowed[0]))
    assert (got["cpu"], got["loop"], got["thread"]) == (allowed[0], [allowed[0]], [allowed[0]])
    assert got["worker"] == allowed


@linux_smp
@pytest.mark.parametrize("setting", ["off", "4096"])
def test_off_or_an_unusable_cpu_pins_nothing(setting: str) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    assert probe(setting) == {"cpu": None, "loop": allowed, "thread": allowed, "worker": allowed}
