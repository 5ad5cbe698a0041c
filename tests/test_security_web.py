"""Attacks on the real server over HTTP: no handler input makes the server read, copy or serve a
file it did not receive as an upload; identity comes from the login; downloads stay private."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from chat.web.page import PAGE_CSS, PAGE_JS
from tests import api_support, web_support

live = api_support.live  # accounts mode: alice and bob (users), root (admin)
FILE_KINDS = {"chatbot", "file", "image", "gallery", "audio", "video", "multimodaltextbox"}


@pytest.fixture(scope="module")
def secrets_on_disk(live, tmp_path_factory):
    """Files a client must never get: the database and its WAL, an adapter, system files,
    and a file in the temporary folder (where Gradio may serve what a handler returns)."""
    data = live["cfg"].data_dir
    adapter = data / "adapters" / "v0009" / "adapter_model.safetensors"
    adapter.parent.mkdir(parents=True, exist_ok=True)
    adapter.write_bytes(b"adapter weights " + os.urandom(16))
    loose = Path(tempfile.mkdtemp()) / "secret.md"
    loose.write_text("a secret in the temporary folder " + os.urandom(8).hex())
    paths = [data / "chat.db", data / "chat.db-wal", adapter, Path("/etc/passwd"),
             Path("/proc/self/environ"), loose]
    return [p for p in paths if p.exists()]


def _file_part(path: Path) -> dict:
    return {"path": str(path), "orig_name": "notes.md", "meta": {"_type": "gradio.FileData"}}


def _payload(kind: str, path: Path):
    if kind == "chatbot":
        return [{"role": "user", "content": [{"type": "file", "file": _file_part(path)}]},
                {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]
    if kind in ("file", "gallery"):
        return [_file_part(path)]
    if kind == "multimodaltextbox":
        return {"text": "hi", "files": [_file_part(path)]}
    return _file_part(path)


def _cache_files() -> set[str]:
    from gradio.utils import get_upload_folder

    root = Path(get_upload_folder())
    return {str(p) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _leaked(web: httpx.Client, output, secrets: list[Path]) -> list[str]:
    """Paths in a handler's output that hold, or serve, the bytes of a secret."""
    contents = {p.read_bytes() for p in secrets if p.stat().st_size}
    leaks = []
    for path in web_support.paths_in(output):
        local = Path(path)
        if local.is_file() and local.read_bytes() in contents:
            leaks.append(path)
        r = web.get(f"/gradio_api/file={path}")
        if r.status_code == 200 and r.content in contents:
            leaks.append(path)
    return leaks


@pytest.mark.parametrize("user", ["alice", "root"])
def test_no_handler_input_copies_or_serves_a_server_file(live, secrets_on_disk, user):
    web = web_support.login(live["url"], user)
    targets = [h for h in web_support.handlers(web) if FILE_KINDS & set(h["inputs"])]
    names = {(h["api_name"] or "").lstrip("_") for h in targets}
    assert {"chat", "retry", "edit", "undo", "like", "compare", "admin_upload"} <= names
    before = _cache_files()
    for handler in targets:
        for secret in secrets_on_disk:
            data = [_payload(k, secret) if k in FILE_KINDS else
                    ("hi" if k == "textbox" else None) for k in handler["inputs"]]
            result = web_support.call(web, handler, data,
                                      event_data={"index": 1, "value": "x", "liked": True})
            output = result.get("output", {})
            assert not _leaked(web, output, secrets_on_disk), (handler["api_name"], secret)
            assert not (result.get("success") and web_support.paths_in(output)), handler
    assert _cache_files() == before  # nothing was copied into Gradio's cache


def test_server_files_are_not_served_by_name(live, secrets_on_disk):
    web = web_support.login(live["url"], "root")
    for secret in secrets_on_disk:
        assert web.get(f"/gradio_api/file={secret}").status_code in (403, 404)


def test_a_chat_holding_an_uploaded_file_is_refused_with_a_clear_message(live):
    """Even a file this client did upload (so Gradio's own path check lets it through) is
    refused in a chat: the chat is text only, and nothing is added to Gradio's cache."""
    web = web_support.login(live["url"], "alice")
    [uploaded] = web.post("/gradio_api/upload",
                          files={"files": ("notes.md", b"# my notes")}).json()
    undo = web_support.named(web, "undo")
    before = _cache_files()
    result = web_support.call(web, undo, [_payload("chatbot", Path(uploaded)), None],
                              event_data={"index": 0, "value": "x"})
    assert result.get("success") is False
    assert "text only" in str(result.get("output", {}).get("error"))
    assert _cache_files() == before


def test_another_users_session_hash_does_not_make_their_rating(live):
    """bob replays alice's session hash: nothing is recorded as alice."""
    store = live["store"]
    alice, bob = (web_support.login(live["url"], u) for u in ("alice", "bob"))
    chat = web_support.named(alice, "chat")
    session = "alicesession1"
    done = web_support.call(alice, chat, ["What is this product?", [], None], session)
    assert done.get("success"), done
    history = done["output"]["data"][1]
    like = web_support.named(bob, "like")
    before = store.query("SELECT id FROM ratings")
    web_support.call(bob, like, [history, None], session,
                     event_data={"index": 1, "value": history[1]["content"], "liked": False})
    new = [r for r in store.query("SELECT user FROM ratings WHERE id NOT IN "
                                  f"({','.join(str(r['id']) for r in before) or 0})")]
    assert all(r["user"] == "bob" for r in new)  # never alice's name on bob's click


def test_another_users_session_hash_does_not_show_their_sources(live):
    alice, bob = (web_support.login(live["url"], u) for u in ("alice", "bob"))
    session = "alicesources1"
    done = web_support.call(alice, web_support.named(alice, "chat"),  # the shipped knowledge
                            ["How do I rate an answer in the chat?", [], None], session)
    assert done.get("success"), done
    sources = web_support.named(bob, "sources")
    mine = web_support.call(alice, sources, [None], session)
    theirs = web_support.call(bob, sources, [None], session)
    assert mine["output"]["data"][0]["data"]  # alice's own session shows her sources
    assert not theirs["output"]["data"][0]["data"]  # bob, on her hash, sees nothing


def test_an_export_is_served_only_to_the_admin_who_made_it(live):
    root, alice = (web_support.login(live["url"], u) for u in ("root", "alice"))
    live["rt"].downloads.copy_grace_s = 1.0
    export = web_support.named(root, "admin_export")
    result = web_support.call(root, export, [None, "raw"])
    assert result.get("success"), result
    [path] = web_support.paths_in(result["output"]["data"])
    assert root.get(f"/gradio_api/file={path}").status_code == 200
    # Gradio serves files at /file=PATH and /file/PATH and normalises what follows
    for url in (f"/gradio_api/file={path}", f"/gradio_api/file/{path}",
                f"/gradio_api/file={path}/", f"/gradio_api/file={path}/.",
                f"/gradio_api/file={path.replace('-dl', '-%64l')}"):
        assert alice.get(url).status_code in (403, 404), url
    assert httpx.get(f"{live['url']}/gradio_api/file={path}").status_code in (401, 404)
    time.sleep(2.0)
    leftover = list(Path(tempfile.gettempdir()).glob(f"download-*/{Path(path).name}"))
    assert leftover == []  # the temporary folder went once Gradio had its copy
    assert root.get(f"/gradio_api/file={path}").status_code == 200  # Gradio's copy stays


@pytest.mark.parametrize("origin", ["http://localhost:9999", "http://127.0.0.1:1",
                                    "https://evil.example"])
def test_other_origins_get_no_credentialed_cors(live, origin):
    r = httpx.options(live["url"] + "/gradio_api/queue/join", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST"})
    assert r.headers.get("access-control-allow-origin") != origin
    r = httpx.get(live["url"] + "/config", headers={"Origin": origin})
    assert r.headers.get("access-control-allow-origin") != origin
    assert "access-control-allow-credentials" not in r.headers


def test_guessing_a_password_is_slowed_but_never_locks_the_owner_out(live):
    from chat.auth import add_user

    add_user(live["store"], "carol", api_support.PASSWORD)
    guesser = httpx.Client(base_url=live["url"], timeout=60)
    statuses = [guesser.post("/login", data={"username": "carol", "password": f"guess {i}"}
                             ).status_code for i in range(5)]
    assert statuses[:3] == [400, 400, 400] and 429 in statuses[3:]
    r = guesser.post("/login", data={"username": "carol", "password": api_support.PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1  # not even checked
    owner = web_support.login(  # the owner, from another address, gets in at once
        live["url"], "carol", transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    assert owner.get("/gradio_api/login_check").status_code == 200


def test_a_cross_site_login_post_is_refused(live):
    r = httpx.post(live["url"] + "/login", headers={"Origin": "https://evil.example"},
                   data={"username": "alice", "password": api_support.PASSWORD})
    assert r.status_code == 403 and "access-token" not in r.headers.get("set-cookie", "")


def test_an_unexpected_error_does_not_show_its_text(live):
    """gr.Error messages reach the browser; an exception's own text (a path, a query) not."""
    web = web_support.login(live["url"], "alice")
    history = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    result = web_support.call(web, web_support.named(web, "retry"), [history, None],
                              event_data={"index": 99, "value": "x"})  # no turn 99: IndexError
    assert result.get("success") is False
    assert "index" not in str(result.get("output", {}).get("error") or "")


def test_the_login_throttle_reads_forwarded_addresses_only_behind_a_proxy(cfg, tiny_engine):
    from chat.config import replace
    from chat.server import build_server
    from chat.web.login_guard import LoginGuard
    from tests.wiring_support import wired

    for trust in (False, True):
        rt = wired(replace(cfg, auth="accounts", trust_proxy=trust), tiny_engine)
        guard = next(m for m in build_server(rt).user_middleware if m.cls is LoginGuard)
        assert guard.kwargs["trust_forwarded"] is trust


def test_the_page_script_and_style_are_served_with_the_app(live):
    """The edit box is cleaned of the badge and sized in the browser (chat/web/page.py); the
    server strips the badge from an edit all the same (tests/test_app_feedback.py)."""
    config = web_support.login(live["url"], "alice").get("/config").json()
    assert PAGE_JS in config["js"] and PAGE_CSS.strip() in config["css"]
