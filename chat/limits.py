"""Per-user sliding-window rate limit and a bounded count of requests in flight."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from chat.errors import RateLimited


class RateLimiter:
    """At most `limit` requests per user in any `window_s` seconds (0 or less: no limit)."""

    def __init__(self, limit: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = int(limit)
        self.window_s = window_s
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, user: str) -> None:
        """Count one request for `user`, or raise RateLimited (and count nothing)."""
        if self.limit <= 0:
            return
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(user, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                wait = max(1, math.ceil(hits[0] + self.window_s - now))
                raise RateLimited(
                    f"too many requests: the limit is {self.limit} per "
                    f"{self.window_s:g} seconds; try again in {wait} s", retry_after=wait)
            hits.append(now)
            self._forget_idle(now)

    def retry_after(self, user: str) -> int:
        """Seconds until `user` may send again (0 if now)."""
        with self._lock:
            hits = self._hits.get(user)
            if not hits or len(hits) < self.limit:
                return 0
            return max(1, math.ceil(hits[0] + self.window_s - self.clock()))

    def _forget_idle(self, now: float) -> None:
        # keep memory bounded by active users: drop users with no hit in the window
        if len(self._hits) > 1024:
            for name in [u for u, h in self._hits.items() if not h or h[-1] <= now - self.window_s]:
                del self._hits[name]


class InFlight:
    """A bounded queue: at most `limit` requests waiting or running; the next gets 'busy'."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.count = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.limit > 0 and self.count >= self.limit:
                raise RateLimited(f"the server is busy ({self.count} requests in progress); "
                                  "try again in a few seconds")
            self.count += 1

    def release(self) -> None:
        with self._lock:
            self.count = max(0, self.count - 1)

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
