"""The notifier (node/sync/notifier.py): wake-ups, their order, cancellation, timeouts."""

from __future__ import annotations

import asyncio
import time

from node.sync.notifier import Notifier


async def test_a_change_wakes_every_waiter_clients_first() -> None:
    notifier = Notifier()
    start = notifier.current_token()
    order: list[str] = []

    async def wait(name: str, background: bool) -> None:
        await notifier.wait_for_change(start, 5, background=background)
        order.append(name)

    tasks = [
        asyncio.create_task(wait("loop", True)),
        asyncio.create_task(wait("sync 1", False)),
        asyncio.create_task(wait("sync 2", False)),
    ]
    await asyncio.sleep(0)  # all three are waiting
    notifier.notify("events", 3)
    await asyncio.gather(*tasks)
    assert order == ["sync 1", "sync 2", "loop"]


async def test_a_cancelled_wait_leaves_the_others_waiting() -> None:
    notifier = Notifier()
    start = notifier.current_token()
    gone = asyncio.create_task(notifier.wait_for_change(start, 5))
    kept = asyncio.create_task(notifier.wait_for_change(start, 5))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert gone.cancelled() and not kept.done()
    notifier.notify("to_device", 1)
    token = await asyncio.wait_for(kept, 1)
    assert token.is_after(start)
    assert not notifier._waiters and not notifier._background  # nothing left behind


async def test_no_change_returns_at_the_timeout_and_old_positions_wake_nobody() -> None:
    notifier = Notifier()
    notifier.set_initial("events", 10)
    start = notifier.current_token()
    t0 = time.monotonic()
    waiting = asyncio.create_task(notifier.wait_for_change(start, 0.2))
    await asyncio.sleep(0)
    notifier.notify("events", 9)  # behind: not a change
    token = await waiting
    assert time.monotonic() - t0 >= 0.19
    assert not token.is_after(start)


async def test_close_wakes_waiters_and_later_waits_return_at_once() -> None:
    notifier = Notifier()
    start = notifier.current_token()
    waiting = asyncio.create_task(notifier.wait_for_change(start, 30))
    await asyncio.sleep(0)
    notifier.close()
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(notifier.wait_for_change(start, 30), 1)
