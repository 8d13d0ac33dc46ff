"""The notifier: in-process pub/sub of stream positions.

Every area that writes to a stream calls ``notify(stream, position)`` after its
write is committed; a waiting /sync (or the TUI) wakes at once. Positions only
move forward.
"""

from __future__ import annotations

import asyncio
import time

from node.sync.tokens import STREAMS, StreamToken


class Notifier:
    def __init__(self) -> None:
        self._positions: dict[str, int] = dict.fromkeys(STREAMS, 0)
        # Each waiter has its own future (a cancelled wait cancels only its own), woken
        # in the order they started waiting; clients' long polls before the node's
        # own background loops, so a /sync answers before they do their work.
        self._waiters: dict[asyncio.Future[None], None] = {}
        self._background: dict[asyncio.Future[None], None] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """The node is stopping: every wait returns now, and later ones at once (a
        long-polling /sync must not hold up the shutdown for its whole timeout)."""
        self._closed = True
        self._wake_all()

    def set_initial(self, stream: str, position: int) -> None:
        """Record where a stream stands at start-up (from the database)."""
        if stream not in self._positions:
            raise KeyError(stream)
        self._positions[stream] = max(self._positions[stream], position)

    def current_token(self) -> StreamToken:
        return StreamToken.from_mapping(self._positions)

    def notify(self, stream: str, position: int) -> None:
        if stream not in self._positions:
            raise KeyError(stream)
        if position <= self._positions[stream]:
            return
        self._positions[stream] = position
        self._wake_all()

    def _wake_all(self) -> None:
        for waiters in (self._waiters, self._background):
            woken = list(waiters)
            waiters.clear()
            for waiter in woken:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_for_change(
        self, since: StreamToken, timeout_s: float, *, background: bool = False
    ) -> StreamToken:
        """Return the current token as soon as it is after ``since``, or at the timeout.
        ``background``: a loop of the node itself, woken after the clients' waits."""
        deadline = time.monotonic() + timeout_s
        loop = asyncio.get_running_loop()
        waiters = self._background if background else self._waiters
        while True:
            token = self.current_token()
            remaining = deadline - time.monotonic()
            if token.is_after(since) or remaining <= 0 or self._closed:
                return token
            waiter: asyncio.Future[None] = loop.create_future()
            waiters[waiter] = None
            timer = loop.call_later(remaining, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                waiters.pop(waiter, None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
