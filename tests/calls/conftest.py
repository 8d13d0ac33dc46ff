"""Fixtures for the call tests: media peers in network namespaces of the lab.

aioice gathers no candidates on 127.0.0.1 and must never gather on the machine's real
interfaces (../shared/LAB.md), so every aiortc peer runs on an event loop in a thread
that has joined one host namespace of a :class:`tests.discovery.lab.Lab` (network
namespaces are per thread on Linux). The test itself runs on pytest's loop in the root
namespace and only hands coroutines to the peers' loops; it opens no socket.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest

from tests.discovery.lab import CLONE_NEWNET, NETNS_DIR, Lab, lab_up

T = TypeVar("T")
WITHIN = 20.0  # generous: a loaded 2-core machine


class NetnsLoop:
    """An event loop running forever in a thread inside the namespace ``netns``."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.loop = asyncio.new_event_loop()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name=f"call-{netns}", daemon=True)
        self._thread.start()
        self._ready.result(timeout=10)

    def _main(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(NETNS_DIR / self.netns, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {self.netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            here = os.stat("/proc/thread-self/ns/net").st_ino
            if here != os.stat(NETNS_DIR / self.netns).st_ino:
                raise RuntimeError(f"the peer thread is not in {self.netns}")
        except BaseException as e:
            self._ready.set_exception(e)
            return
        asyncio.set_event_loop(self.loop)
        self._ready.set_result(None)
        self.loop.run_forever()
        self.loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this namespace's loop and await its result from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def leftover_tasks(self) -> list[asyncio.Task[Any]]:
        """Tasks still alive on this loop (other than the one asking)."""

        async def ask() -> list[asyncio.Task[Any]]:
            me = asyncio.current_task()
            return [t for t in asyncio.all_tasks() if t is not me and not t.done()]

        return asyncio.run_coroutine_threadsafe(ask(), self.loop).result(timeout=10)

    def stop(self) -> None:
        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """Two hosts on a bridge (10.99.0.1 and 10.99.0.2); torn down even on failure."""
    with lab_up(2, "call media tests") as lab:
        yield lab


@pytest.fixture
def peers(lab: Lab) -> Iterator[tuple[NetnsLoop, NetnsLoop]]:
    """An event loop in each host namespace of the lab."""
    made: list[NetnsLoop] = []
    try:
        for host in lab.hosts:
            made.append(NetnsLoop(host))
        yield made[0], made[1]
    finally:
        for peer in made:
            peer.stop()


async def until(found: Callable[[], object], what: str, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {within} s: {what}")
        await asyncio.sleep(0.05)
