"""A token bucket per room, and logs that repeat a problem at most once a minute.

Token bucket (the classic shaping algorithm, as in RFC 2697's committed burst): a room
holds up to ``burst`` tokens, refilled at ``rate`` tokens per second; each event sent
takes one. A quiet room can take a burst at once, a busy one is held to ``rate``.
Defaults (config ``[sensors]``): 10 events/s, burst 100.

Both classes take the clock as a function, so tests drive them with a fake one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def available(self) -> int:
        """Whole tokens there now."""
        self._refill()
        return int(self._tokens)

    def take(self, n: int) -> None:
        """Use ``n`` tokens (callers take at most :meth:`available`)."""
        self._refill()
        self._tokens -= n

    def wait_time(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens are there (0 if they are)."""
        self._refill()
        missing = min(n, self.burst) - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate


class LogLimiter:
    """Logs each problem (by key) at once, then at most every ``every`` seconds with
    the number of repeats in between; logs once when the problem is gone."""

    def __init__(self, log: logging.Logger, every: float = 60.0, clock: Clock = time.monotonic):
        self._log = log
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._repeats: dict[str, int] = {}

    def problem(self, key: str, message: str, level: int = logging.WARNING) -> bool:
        """Log ``message`` unless it was logged less than ``every`` s ago; True if logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            self._repeats[key] = self._repeats.get(key, 0) + 1
            return False
        repeats = self._repeats.pop(key, 0)
        suffix = f" (and {repeats} more times since the last report)" if repeats else ""
        self._log.log(level, "%s%s", message, suffix)
        self._last[key] = now
        return True

    def resolved(self, key: str, message: str) -> None:
        """The problem ``key`` is gone: say so once (if it was reported)."""
        if self._last.pop(key, None) is not None:
            self._repeats.pop(key, None)
            self._log.info("%s", message)

    def in_trouble(self, key: str) -> bool:
        return key in self._last
