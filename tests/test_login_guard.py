"""Login throttling: growing per-address delays that never lock the real user out."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm
from starlette.testclient import TestClient

from chat.web.login_guard import LoginGuard, LoginThrottle, ThrottleSettings

PASSWORD = "correct horse"
ATTACKER, VICTIM = ("6.6.6.6", 4444), ("1.2.3.4", 1234)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock, **settings) -> LoginThrottle:
    return LoginThrottle(ThrottleSettings(**settings), clock=clock)


# ---- LoginGuard around an app that logs in as Gradio's does ---------------------------------

def gradio_like(calls: list) -> FastAPI:
    app = FastAPI()

    @app.post("/login")
    @app.post("/login/")
    async def login(form: OAuth2PasswordRequestForm = Depends()):
        calls.append(form.username)
        if form.password != PASSWORD:
            raise HTTPException(status_code=400, detail="Incorrect credentials.")
        response = JSONResponse({"success": True})
        response.set_cookie("access-token", "t0k3n")
        return response

    @app.get("/login")
    def page():
        return {"page": "login"}

    @app.post("/echo")
    async def echo(request: Request):
        return {"size": len(await request.body())}

    return app


@pytest.fixture
def site():
    calls, clock = [], FakeClock()
    app = gradio_like(calls)
    guard = throttle(clock, pair_free=3, base_s=1.0)
    app.add_middleware(LoginGuard, throttle=guard, allowed_origins=["https://chat.example.org"])

    def client(address=ATTACKER) -> TestClient:
        return TestClient(app, client=address)
    return {"calls": calls, "clock": clock, "throttle": guard, "client": client}


def login(client: TestClient, password: str, name: str = "admin", **kwargs):
    return client.post("/login", data={"username": name, "password": password}, **kwargs)


def test_the_attacker_gets_429_after_the_free_failures(site):
    attacker = site["client"]()
    assert [login(attacker, "guess").status_code for _ in range(4)] == [400] * 4
    r = login(attacker, PASSWORD)  # even the right password is not checked now
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert len(site["calls"]) == 4
    site["clock"].now += 2
    assert login(attacker, PASSWORD).status_code == 200


def test_the_admin_logs_in_from_elsewhere_while_the_attacker_waits(site):
    attacker, admin = site["client"](ATTACKER), site["client"](VICTIM)
    for _ in range(12):
        login(attacker, "guess")
    assert login(attacker, "guess").status_code == 429
    r = login(admin, PASSWORD)
    assert r.status_code == 200 and r.json() == {"success": True}
    assert r.cookies["access-token"] == "t0k3n"  # the answer passes through unchanged
    assert login(attacker, "guess").status_code == 429


def test_a_successful_login_clears_the_pair(site):
    c, t = site["client"](), site["throttle"]
    statuses = [login(c, p).status_code for p in ["guess"] * 3 + [PASSWORD] + ["guess"] * 3]
    assert statuses == [400, 400, 400, 200, 400, 400, 400]
    assert t.wait_s("admin", ATTACKER[0]) == 0  # 3 since the success: still free
    assert login(c, "guess").status_code == 400
    assert t.wait_s("admin", ATTACKER[0]) == 2


def test_cross_site_posts_are_refused_unread(site):
    c = site["client"]()
    r = login(c, PASSWORD, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    r = login(c, PASSWORD, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert site["calls"] == []


def test_same_origin_and_allowed_origins_pass(site):
    c = site["client"]()
    assert login(c, PASSWORD, headers={"Origin": "http://testserver",
                                       "Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert login(c, PASSWORD, headers={"Origin": "https://chat.example.org"}).status_code == 200
    assert site["calls"] == ["admin", "admin"]


def test_other_requests_are_untouched(site):
    c = site["client"]()
    for _ in range(12):
        login(c, "guess")
    assert login(c, "guess").status_code == 429
    assert c.get("/login").json() == {"page": "login"}
    assert c.post("/echo", content=b"x" * 100_000).json() == {"size": 100_000}
    assert c.post("/echo", headers={"Origin": "https://evil.example"}).status_code == 200


def test_oversized_login_bodies_are_refused(site):
    c = site["client"]()
    r = login(c, "p" * 9000)
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
    chunked = c.post("/login", content=iter([b"username=a&password="] + [b"p" * 1024] * 9),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert chunked.status_code == 413 and "content-length" not in chunked.request.headers
    assert site["calls"] == []


def test_a_failed_login_is_logged_without_the_password(site, caplog):
    with caplog.at_level(logging.WARNING, logger="chat.login"):
        login(site["client"](), "hunter2", name=" alice ")
    [record] = [r for r in caplog.records if r.name == "chat.login"]
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "'alice'" in message and "6.6.6.6" in message and "failures=1" in message
    assert "hunter2" not in message


def test_the_name_is_read_from_gradios_multipart_form(site):
    c = site["client"]()
    for _ in range(4):
        r = c.post("/login", files={"username": (None, " alice"), "password": (None, "guess")})
        assert r.status_code == 400
    assert site["calls"] == [" alice"] * 4  # the body reached the app whole
    assert site["throttle"].wait_s("alice", ATTACKER[0]) == 2
    assert site["throttle"].wait_s("bob", ATTACKER[0]) == 0


def test_x_forwarded_for_is_ignored_unless_trusted():
    clock, calls = FakeClock(), []
    for trusted, expected in ((False, ATTACKER[0]), (True, "9.9.9.9")):
        t = throttle(clock)
        c = TestClient(LoginGuard(gradio_like(calls), throttle=t, trust_forwarded=trusted),
                       client=ATTACKER)
        login(c, "guess", headers={"X-Forwarded-For": "9.9.9.9, 10.0.0.1"})
        assert t.failed("admin", expected) == 2  # the first failure was counted there


def raw_scope(*headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http", "method": "POST", "path": "/login", "root_path": "",
            "scheme": "http", "client": ATTACKER, "query_string": b"",
            "headers": [(b"content-type", b"application/x-www-form-urlencoded"), *headers]}


def test_a_declared_oversized_body_is_refused_unread():
    async def no_receive():
        raise AssertionError("the body was read")

    async def main():
        sent = []

        async def send(message):
            sent.append(message)
        await LoginGuard(gradio_like([]))(raw_scope((b"content-length", b"100000")),
                                          no_receive, send)
        return sent[0]["status"]

    assert asyncio.run(main()) == 413


def test_parallel_guesses_from_one_address_wait_their_turn():
    release, seen = asyncio.Event(), []

    async def slow_app(scope, receive, send):
        seen.extend([await receive(), await receive()])  # the body, then the real receive
        await release.wait()
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = LoginGuard(slow_app, max_in_flight=1)

    async def attempt(statuses):
        scope = raw_scope()
        body = iter([{"type": "http.request", "body": b"username=a&password=b"}])

        async def receive():
            return next(body, {"type": "http.disconnect"})

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
        await guard(scope, receive, send)

    async def main():
        statuses = []
        first = asyncio.create_task(attempt(statuses))
        await asyncio.sleep(0.01)
        # the second comes while the first is still in the app; a hang here is a failure
        await asyncio.wait_for(attempt(statuses), 2)
        release.set()
        await asyncio.wait_for(first, 2)
        return statuses

    assert asyncio.run(main()) == [429, 400]
    assert seen == [{"type": "http.request", "body": b"username=a&password=b",
                     "more_body": False}, {"type": "http.disconnect"}]


def test_in_front_of_the_real_gradio_login():
    gr = pytest.importorskip("gradio")  # Gradio's route, form and statuses are as assumed
    with gr.Blocks() as blocks:
        gr.Markdown("hello")
    app = gr.mount_gradio_app(FastAPI(), blocks, path="/",
                              auth=lambda name, password: (name, password) == ("admin", PASSWORD))
    app.add_middleware(LoginGuard, throttle=LoginThrottle())
    attacker, admin = TestClient(app, client=ATTACKER), TestClient(app, client=VICTIM)
    guesses = [attacker.post("/login", files={"username": (None, "admin "),
                                              "password": (None, "guess")}) for _ in range(5)]
    assert [r.status_code for r in guesses] == [400, 400, 400, 400, 429]
    assert guesses[0].json() == {"detail": "Incorrect credentials."}
    assert login(attacker, PASSWORD).status_code == 429
    r = login(admin, PASSWORD, headers={"Origin": "http://testserver"})
    assert r.status_code == 200 and r.json() == {"success": True}
    assert any(k.startswith("access-token") for k in r.cookies)
