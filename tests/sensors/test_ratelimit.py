"""The token bucket and the log limiter, on a fake clock."""

from __future__ import annotations

import logging

import pytest

from node.sensors.ratelimit import LogLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_then_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=100, clock=clock)
    assert bucket.available() == 100
    bucket.take(100)
    assert bucket.available() == 0
    assert bucket.wait_time(1) == pytest.approx(0.1)
    assert bucket.wait_time(5) == pytest.approx(0.5)
    clock.now += 0.35
    assert bucket.available() == 3
    clock.now += 3600  # a long quiet spell refills only up to the burst
    assert bucket.available() == 100
    assert bucket.wait_time(1) == 0.0


def test_bucket_holds_a_busy_room_to_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.5, burst=5, clock=clock)
    sent = 0
    for _ in range(400):  # 40 s in steps of 0.1 s, taking whatever is there
        n = bucket.available()
        bucket.take(n)
        sent += n
        clock.now += 0.1
    # The burst, then 2.5/s for 40 s (the last step's half token may be left over).
    assert 5 + 100 - 1 <= sent <= 5 + 100
    assert bucket.wait_time(200) <= 5 / 2.5  # asking for more than the burst: a full bucket


def test_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)


def test_log_limiter_repeats_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logs = LogLimiter(logging.getLogger("t"), every=60, clock=clock)
    caplog.set_level(logging.INFO, "t")
    assert logs.problem("a", "source a failed")
    for _ in range(5):
        clock.now += 1
        assert not logs.problem("a", "source a failed")
    assert logs.problem("b", "source b failed")  # another key is its own
    clock.now += 60
    assert logs.problem("a", "source a failed")
    logs.resolved("a", "source a reads again")
    logs.resolved("a", "source a reads again")  # said once
    logs.resolved("c", "never failed")  # nothing to say
    assert [r.getMessage() for r in caplog.records] == [
        "source a failed",
        "source b failed",
        "source a failed (and 5 more times since the last report)",
        "source a reads again",
    ]
    assert not logs.in_trouble("a") and logs.in_trouble("b")
