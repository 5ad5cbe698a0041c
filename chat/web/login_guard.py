"""Slow password guessing on Gradio's POST /login without letting anyone lock a user out:
failures count per address and per (name, address), never per name alone, so the right
password from another address always gets through. LoginGuard is a pure ASGI middleware."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from chat.api.errors import error_response

log = logging.getLogger("chat.login")
LOGIN_PATHS = frozenset({"/login", "/login/"})  # Gradio's login route, mounted at "/"
MAX_LOGIN_BODY = 8 * 1024  # a user name and password fit many times over
KINDS = {403: "permission_error", 413: "invalid_request_error", 429: "rate_limit_error"}


@dataclass(frozen=True)
class ThrottleSettings:
    pair_free: int = 3  # failures for one name from one address before any wait (typos)
    address_free: int = 10  # failures from one address, all names together (a shared NAT)
    base_s: float = 1.0  # the wait after failure n past the free ones: base_s * 2**(n - free)
    cap_s: float = 300.0  # never more than this: a real user who forgot is not stuck for hours
    forget_s: float = 900.0  # a key with no failure for this long starts again from zero
    max_keys: int = 10_000  # memory bound: past this, the longest-quiet keys are dropped


class LoginThrottle:
    """Growing delays after failed logins, per address and per (name, address); thread-safe."""

    def __init__(self, settings: ThrottleSettings | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings or ThrottleSettings()
        self.clock = clock
        # key -> (failures, time of the last), in order of the last: pruning pops the front
        self._fails: dict[tuple, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def _keys(self, name: str, address: str) -> list[tuple[tuple, int]]:
        free = self.settings.pair_free, self.settings.address_free
        return [(("pair", name, address), free[0]), (("addr", address), free[1])]

    def _delay(self, count: int, free: int) -> float:
        over = min(count - free, 64)  # 64: 2**n is past any cap by then, and cannot overflow
        return 0.0 if over <= 0 else min(self.settings.cap_s, self.settings.base_s * 2.0**over)

    def wait_s(self, name: str, address: str) -> float:
        """Seconds before `name` may be tried from `address` (0.0: now)."""
        now = self.clock()
        with self._lock:
            waits = [0.0]
            for key, free in self._keys(name, address):
                count, last = self._fails.get(key, (0, now))
                if now - last < self.settings.forget_s:
                    waits.append(last + self._delay(count, free) - now)
            return max(waits)

    def failed(self, name: str, address: str) -> int:
        """Count one wrong password; returns the failures for this name from this address."""
        now = self.clock()
        with self._lock:
            counts = []
            for key, _ in self._keys(name, address):
                count, last = self._fails.pop(key, (0, now))
                counts.append((count if now - last < self.settings.forget_s else 0) + 1)
                self._fails[key] = (counts[-1], now)  # re-inserted at the end: newest last
            self._prune(now)
            return counts[0]

    def succeeded(self, name: str, address: str) -> None:
        """The right password: forget this pair's failures. The address count stays, or an
        attacker with an account of their own could reset it between guesses."""
        with self._lock:
            self._fails.pop(("pair", name, address), None)

    def __len__(self) -> int:
        return len(self._fails)

    def _prune(self, now: float) -> None:
        # ordered by last failure: drop quiet keys from the front, then the oldest past the cap
        while self._fails:
            key, (_, last) = next(iter(self._fails.items()))
            if now - last < self.settings.forget_s and len(self._fails) <= self.settings.max_keys:
                return
            del self._fails[key]


class LoginGuard:
    """Pure ASGI middleware: only POST /login is read, checked and throttled; the rest passes."""

    def __init__(self, app, *, throttle: LoginThrottle | None = None,
                 allowed_origins: Iterable[str] = (), trust_forwarded: bool = False,
                 max_body: int = MAX_LOGIN_BODY, max_in_flight: int = 2):
        self.app = app
        self.throttle = LoginThrottle() if throttle is None else throttle  # empty is falsy
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.trust_forwarded, self.max_body = trust_forwarded, max_body
        # without this, a burst of parallel guesses would all pass before the first one fails
        self.max_in_flight, self._in_flight = max_in_flight, Counter()  # event loop only

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))  # --root-path
        if scope["type"] != "http" or scope["method"] != "POST" or path not in LOGIN_PATHS:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if self._cross_site(scope, headers):
            return await _refuse(scope, receive, send, 403, "cross-site login refused")
        body = await _read_body(receive, headers, self.max_body)
        if body is None:
            return await _refuse(scope, receive, send, 413, "the login form is too large")
        name, address = await _username(scope, receive, body), self._address(scope, headers)
        wait = self.throttle.wait_s(name, address)
        wait = max(wait, float(self._in_flight[address] >= self.max_in_flight))  # busy: 1 s
        if wait > 0:
            log.info("login throttled: name=%r address=%s wait=%.0fs", name, address, wait)
            return await _refuse(scope, receive, send, 429, "too many failed logins; try "
                                 "again later", {"Retry-After": str(math.ceil(wait))})
        self._in_flight[address] += 1
        try:
            await self.app(scope, _replay(body, receive), self._watch(send, name, address))
        finally:
            self._in_flight[address] -= 1
            if self._in_flight[address] <= 0:
                del self._in_flight[address]

    def _watch(self, send, name: str, address: str):
        async def watching_send(message):
            if message["type"] == "http.response.start":  # counted before the client sees it
                if message["status"] == 400:
                    n = self.throttle.failed(name, address)
                    # %r: a user name with a newline must not forge log lines; no password here
                    log.warning("failed login: name=%r address=%s failures=%d", name, address, n)
                elif message["status"] == 200:
                    self.throttle.succeeded(name, address)
            await send(message)
        return watching_send

    def _cross_site(self, scope, headers: Headers) -> bool:
        # a page elsewhere must not post guesses with the victim's browser (login CSRF too)
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return True
        origin = headers.get("origin", "").rstrip("/").lower()  # none from gradio_client, curl
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        return bool(origin) and origin not in {own, *self.allowed_origins}

    def _address(self, scope, headers: Headers) -> str:
        # X-Forwarded-For only behind a proxy that sets it: anyone else can forge it
        forwarded = headers.get("x-forwarded-for", "") if self.trust_forwarded else ""
        client = scope.get("client")
        return forwarded.split(",")[0].strip() or (client[0] if client else "unknown")


async def _read_body(receive, headers: Headers, limit: int) -> bytes | None:
    """The whole body, or None once it is past `limit` (a declared length is refused unread)."""
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return None
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: the app gets what came
            break
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        more = message.get("more_body", False)
    return bytes(body)


def _replay(body: bytes, receive):
    """A receive that gives the already-read body once, then waits on the real one."""
    first = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():  # after the body: the real receive, e.g. for http.disconnect
        return first.pop() if first else await receive()
    return replay


async def _username(scope, receive, body: bytes) -> str:
    # Gradio's own parser: its page posts multipart FormData, gradio_client a urlencoded form
    try:
        async with Request(scope, _replay(body, receive)).form() as form:
            name = form.get("username")
    except (MultiPartException, HTTPException, ValueError):
        return ""  # Gradio refuses it too; the address count still applies
    return name.strip() if isinstance(name, str) else ""  # stripped as Gradio does


async def _refuse(scope, receive, send, status: int, message: str, headers=None):
    await error_response(status, message, KINDS[status], headers=headers)(scope, receive, send)
