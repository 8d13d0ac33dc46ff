"""One CPU for the node's event loop and its SQLite threads (``process.pin_cpu``).

Every send crosses threads twice: the event loop hands the write to the SQLite writer
thread, which commits and wakes the loop again, and both take turns holding Python's
GIL. When the two threads sit on different CPUs, each hand-over wakes an idle CPU and
moves the GIL between caches; on the 2-CPU benchmark machine, keeping them on one CPU
raised 8-sender throughput by 15–30 % and cut the node's CPU per send by a fifth
(benchmarks/REPORT.md, "One CPU for the loop and the writer").
The GIL lets only one of them run Python at a time anyway.

`croft run` pins its main thread (the event loop) before the database opens; the
threads it starts afterwards inherit the CPU: the SQLite writer and reader, and
sensor reads. Work that wants a CPU of its own does not: the default executor
(``asyncio.to_thread``: password hashing, thumbnails, file writes) runs on threads that
first go back to every CPU the process was allowed.

Settings: ``"auto"`` (the default) keeps the CPU the kernel had put the loop on when
`croft run` started (so nodes started together, as in a LAN test, stay spread over the
CPUs), ``"off"`` leaves scheduling to the kernel, a number names the CPU. Nothing is
pinned with a single CPU, or where the OS has no per-thread affinity (only Linux has).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Set
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)

AUTO = "auto"
OFF = "off"


def valid_setting(value: str) -> bool:
    """``auto``, ``off`` or a CPU number (0 or more)."""
    return value in (AUTO, OFF) or (value.isascii() and value.isdigit())


def choose_cpu(setting: str, allowed: Set[int], current: int | None) -> int | None:
    """The CPU to pin to, given the setting, the CPUs the process may use and the one
    the calling thread runs on (None: unknown); None: do not pin (``off``, a single
    CPU, or a named CPU the process may not use)."""
    if setting == OFF or len(allowed) < 2:
        return None
    if setting == AUTO:
        return current if current in allowed else min(allowed)
    cpu = int(setting)
    return cpu if cpu in allowed else None


def current_cpu() -> int | None:
    """The CPU the calling thread last ran on (field 39 of /proc/thread-self/stat)."""
    try:
        with open("/proc/thread-self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[36])
    except (OSError, IndexError, ValueError):
        return None


def pin_event_loop(setting: str, loop: asyncio.AbstractEventLoop) -> int | None:
    """Pin the calling thread, which runs ``loop``, to one CPU (see the module's doc)
    and give ``loop`` a default executor whose threads are not pinned. Call it before
    starting the threads that should share the CPU. Returns the CPU, or None."""
    if not hasattr(os, "sched_setaffinity"):  # not Linux
        return None
    allowed = frozenset(os.sched_getaffinity(0))
    cpu = choose_cpu(setting, allowed, current_cpu())
    if cpu is None:
        if setting not in (AUTO, OFF) and len(allowed) > 1:
            log.warning(
                "process.pin_cpu = %s: not a CPU this process may use (%s); not pinning",
                setting,
                ",".join(map(str, sorted(allowed))),
            )
        return None
    from concurrent.futures import ThreadPoolExecutor

    # On Linux, pid 0 is the calling thread; the other threads keep their CPUs.
    os.sched_setaffinity(0, {cpu})
    loop.set_default_executor(
        ThreadPoolExecutor(
            thread_name_prefix="croft-worker",
            initializer=os.sched_setaffinity,
            initargs=(0, allowed),
        )
    )
    log.debug("event loop and database threads on CPU %d (process.pin_cpu = %s)", cpu, setting)
    return cpu
