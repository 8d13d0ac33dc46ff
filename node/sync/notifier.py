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
        self._wakeup: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """The node is stopping: every wait returns now, and later ones at once (a
        long-polling /sync must not hold up the shutdown for its whole timeout)."""
        self._closed = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

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
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        self._wakeup = None

    async def wait_for_change(self, since: StreamToken, timeout_s: float) -> StreamToken:
        """Return the current token as soon as it is after ``since``, or at the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            token = self.current_token()
            remaining = deadline - time.monotonic()
            if token.is_after(since) or remaining <= 0 or self._closed:
                return token
            if self._wakeup is None or self._wakeup.done():
                self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._wakeup), remaining)
            except TimeoutError:
                return self.current_token()
