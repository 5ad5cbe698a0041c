"""Helpers for the API tests: a real server (uvicorn in a thread) on a free loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest

from chat.auth import add_user, create_api_key
from chat.config import load_config
from tests.conftest import MODEL_CACHE

PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app) -> tuple[str, callable]:
    """Run `app` with uvicorn in a thread on a free loopback port; returns (url, stop)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="module")
def live(tmp_path_factory, real_engine):
    """One server in accounts mode: users alice and bob, admin root, an API key each."""
    from chat.runtime import build_runtime
    from chat.server import build_server

    cfg = load_config(data_dir=tmp_path_factory.mktemp("api") / "data", model_cache=MODEL_CACHE,
                      auth="accounts", max_new_tokens=12, rate_limit_per_minute=1000)
    rt = build_runtime(cfg, engine=real_engine)
    keys = {}
    for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
        add_user(rt.store, name, PASSWORD, role)
        keys[name] = create_api_key(rt.store, name)
    app = build_server(rt)
    url, stop = start_server(app)
    yield {"url": url, "rt": rt, "keys": keys, "store": rt.store, "cfg": cfg, "app": app}
    stop()


def client(live, user: str = "alice", key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=live["url"] + "/v1", api_key=key or live["keys"][user],
                         max_retries=0, timeout=120)


def post(live, path: str, body: dict, user: str = "alice") -> httpx.Response:
    # json.dumps, not httpx's encoder: tests send what a careless client may send too
    # (NaN, escaped unpaired surrogates)
    return httpx.post(live["url"] + path, content=json.dumps(body), timeout=120,
                      headers={"Authorization": f"Bearer {live['keys'][user]}",
                               "Content-Type": "application/json"})


def ask(live, question: str, user: str = "alice", **kwargs):
    return client(live, user).chat.completions.create(
        model=live["cfg"].base_model, messages=[{"role": "user", "content": question}],
        max_tokens=kwargs.pop("max_tokens", 6), **kwargs)
