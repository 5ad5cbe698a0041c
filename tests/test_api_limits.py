"""Per-user sliding-window rate limit and the bound on requests in flight (a fake clock)."""

from __future__ import annotations

import pytest

from chat.errors import RateLimited
from chat.limits import InFlight, RateLimiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_per_user():
    clock = Clock()
    limiter = RateLimiter(3, window_s=60, clock=clock)
    for _ in range(3):
        limiter.check("alice")
        clock.now += 10
    with pytest.raises(RateLimited, match="3 per 60 seconds; try again in 30 s") as err:
        limiter.check("alice")
    assert err.value.retry_after == 30  # the API's Retry-After header
    limiter.check("bob")  # users do not share a budget
    clock.now += 30  # the first hit (t=1000) leaves the window at t=1060
    limiter.check("alice")
    with pytest.raises(RateLimited):
        limiter.check("alice")
    assert limiter.retry_after("alice") == 10


def test_refused_requests_do_not_count():
    clock = Clock()
    limiter = RateLimiter(1, window_s=60, clock=clock)
    limiter.check("alice")
    for _ in range(5):
        clock.now += 5
        with pytest.raises(RateLimited):
            limiter.check("alice")
    clock.now += 36  # 61 s after the only accepted request
    limiter.check("alice")


def test_zero_means_no_limit():
    limiter = RateLimiter(0)
    for _ in range(1000):
        limiter.check("alice")


def test_in_flight_bound():
    gate = InFlight(2)
    with gate.slot(), gate.slot():
        with pytest.raises(RateLimited, match="busy"):
            gate.acquire()
        assert gate.count == 2
    assert gate.count == 0
    with pytest.raises(ValueError):
        with gate.slot():
            raise ValueError("the slot is released on errors too")
    assert gate.count == 0
