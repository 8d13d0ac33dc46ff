"""Positions of the sync streams kept only in memory ("typing", "presence").

A position is at least the wall-clock time in milliseconds, and one more than the last
one: positions handed out after a restart are still after every token a client got
before it, so no change is missed when nothing was kept. Spec: client-server-api
"Syncing" leaves the token format to the server.
"""

from __future__ import annotations

from node.storage.accounts import now_ms
from node.sync.notifier import Notifier


class MemoryStream:
    def __init__(self, name: str, notifier: Notifier) -> None:
        self.name = name
        self.notifier = notifier
        self.position = now_ms()
        notifier.set_initial(name, self.position)

    def next_position(self) -> int:
        """The position of the next change; record the change at it, then :meth:`notify`."""
        self.position = max(self.position + 1, now_ms())
        return self.position

    def notify(self, position: int) -> None:
        """Wake the /sync requests waiting for a change."""
        self.notifier.notify(self.name, position)
