"""LoginThrottle: growing delays per (name, address) and per address, never a lockout."""

from __future__ import annotations

import threading

import pytest

from tests.test_login_guard import FakeClock, throttle

# ---- LoginThrottle ---------------------------------------------------------------------------

def test_delays_grow_after_the_free_failures_and_stop_at_the_cap():
    clock = FakeClock()
    t = throttle(clock, pair_free=3, address_free=100, base_s=1.0, cap_s=60.0)
    waits = []
    for _ in range(10):
        t.failed("alice", "a")
        waits.append(t.wait_s("alice", "a"))
    assert waits == [0, 0, 0, 2, 4, 8, 16, 32, 60, 60]
    clock.now += 45  # the wait counts down from the last failure
    assert t.wait_s("alice", "a") == pytest.approx(15)
    clock.now += 15
    assert t.wait_s("alice", "a") == 0


def test_failures_are_forgotten_after_a_quiet_period():
    clock = FakeClock()
    t = throttle(clock, pair_free=3, forget_s=900.0, cap_s=300.0)
    for _ in range(12):
        t.failed("alice", "a")
    assert t.wait_s("alice", "a") == 300
    clock.now += 900
    assert t.wait_s("alice", "a") == 0
    assert t.failed("alice", "a") == 1  # counting starts again from zero


def test_forgetting_does_not_depend_on_the_cap():
    clock = FakeClock()
    t = throttle(clock, pair_free=0, base_s=1.0, cap_s=10_000.0, forget_s=900.0)
    for _ in range(12):
        t.failed("alice", "a")
    assert t.wait_s("alice", "a") == 4096
    clock.now += 900
    assert t.wait_s("alice", "a") == 0


def test_the_right_password_from_another_address_is_never_blocked():
    clock = FakeClock()
    t = throttle(clock)
    for _ in range(50):
        t.failed("admin", "6.6.6.6")
    assert t.wait_s("admin", "6.6.6.6") == 300  # the attacker waits the cap
    assert t.wait_s("admin", "1.2.3.4") == 0  # the admin, elsewhere, does not wait at all
    t.succeeded("admin", "1.2.3.4")
    assert t.wait_s("admin", "6.6.6.6") == 300  # and the admin's login frees no attacker


def test_the_address_limit_spans_names():
    clock = FakeClock()
    t = throttle(clock, pair_free=3, address_free=10, base_s=1.0)
    for i in range(10):
        t.failed(f"user{i}", "a")  # one guess each: no pair is past its free failures
    assert t.wait_s("someone", "a") == 0
    t.failed("user10", "a")
    assert t.wait_s("someone", "a") == 2  # the 11th failure from "a" gates every name
    assert t.wait_s("someone", "b") == 0


def test_success_clears_the_pair_but_not_the_address_count():
    clock = FakeClock()
    t = throttle(clock, pair_free=1, address_free=3, base_s=1.0)
    for _ in range(3):
        t.failed("alice", "a")
    assert t.wait_s("alice", "a") == 4
    t.succeeded("alice", "a")
    assert t.failed("alice", "a") == 1  # the pair starts from zero
    assert t.wait_s("bob", "a") == 2  # 4 failures from "a": its own count goes on


def test_memory_stays_bounded():
    clock = FakeClock()
    t = throttle(clock, pair_free=3, max_keys=100)
    for i in range(1000):
        t.failed(f"user{i}", f"10.0.{i // 256}.{i % 256}")
    assert len(t) == 100
    for _ in range(3):
        t.failed("user999", "10.0.3.231")  # the newest keys are the ones kept
    assert t.wait_s("user999", "10.0.3.231") == 2
    clock.now += 10_000  # all idle: the next failure drops them
    t.failed("x", "b")
    assert len(t) == 2


def test_counts_are_exact_across_threads():
    t = throttle(FakeClock())
    workers = [threading.Thread(target=lambda: [t.failed("n", "a") for _ in range(200)])
               for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert t.failed("n", "a") == 1601


