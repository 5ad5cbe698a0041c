"""The web app behind the login: the login name is the identity on what gets recorded."""

from __future__ import annotations

import httpx
import pytest

from tests import api_support

live = api_support.live  # the module-scoped server fixture (accounts mode)


def test_anonymous_cannot_use_the_web_app(live):
    from gradio_client import Client

    with pytest.raises(ValueError, match="Could not login"):  # gradio answers 400
        Client(live["url"], auth=("alice", "wrong password"), verbose=False)
    r = httpx.post(live["url"] + "/gradio_api/queue/join", json={"data": [], "fn_index": 0})
    assert r.status_code in (401, 403)


def test_logged_in_chat_is_recorded_under_the_login_name(live):
    from gradio_client import Client

    store = live["store"]
    web = Client(live["url"], auth=("bob", api_support.PASSWORD), verbose=False)
    before = {c["id"] for c in store.query("SELECT id FROM conversations")}
    web.predict("Hello from the browser?", api_name="/chat")
    new = store.query("SELECT * FROM conversations")
    created = [c for c in new if c["id"] not in before]
    assert len(created) == 1 and created[0]["user"] == "bob"


def test_open_mode_needs_no_login_but_the_api_still_needs_a_key(cfg, real_engine):
    from chat.runtime import build_runtime
    from chat.server import build_server

    rt = build_runtime(cfg, engine=real_engine)
    assert cfg.auth == "open"
    url, stop = api_support.start_server(build_server(rt))
    try:
        assert httpx.get(url + "/gradio_api/login_check").status_code == 200
        assert httpx.get(url + "/").status_code == 200
        assert httpx.get(url + "/v1/models").status_code == 401
    finally:
        stop()


def test_web_uploads_past_the_file_size_limit_are_refused_before_they_are_stored(live):
    """Gradio's /upload is open to every logged-in user; CHAT_MAX_FILE_MB holds there too."""
    limit = int(live["cfg"].max_file_mb * 1024 * 1024)
    with httpx.Client(base_url=live["url"], timeout=120) as web:
        assert web.post("/login", data={"username": "alice",
                                         "password": api_support.PASSWORD}).status_code == 200
        small = web.post("/gradio_api/upload", files={"files": ("ok.txt", b"x" * 10)})
        assert small.status_code == 200
        big = web.post("/gradio_api/upload", files={"files": ("big.txt", b"x" * (limit + 1))})
        assert big.status_code == 413 and "maximum allowed size" in big.text
