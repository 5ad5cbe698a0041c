"""Rate limits, the bounded queue and client disconnects, over the real server."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from chat.limits import RateLimiter
from tests import api_support
from tests.api_support import ask, post

live = api_support.live  # the module-scoped server fixture (accounts mode)


@pytest.fixture
def one_per_minute(live):
    """The live server allowing one chat request per user per minute; bob has used his."""
    service = live["rt"].service
    old, service.limiter = service.limiter, RateLimiter(1)
    ask(live, "First question?", user="bob", max_tokens=1)
    yield live
    service.limiter = old


def test_rate_limit_is_429_and_writes_nothing(one_per_minute):
    live = one_per_minute
    before = live["store"].counts()
    with pytest.raises(openai.RateLimitError) as err:
        ask(live, "Second question?", user="bob", max_tokens=1)
    assert "too many requests" in err.value.body["message"]
    assert live["store"].counts() == before
    ask(live, "Alice is not limited by Bob's requests?", user="alice", max_tokens=1)


def test_conversation_ids_are_private(live):
    mine = ask(live, "Remember the number 7.", user="alice").model_extra["conversation_id"]
    r = post(live, "/v1/chat/completions", {"conversation_id": mine, "max_tokens": 2,
                                            "messages": [{"role": "user", "content": "hi"}]},
             user="bob")
    assert r.status_code == 404


def test_bounded_queue_answers_busy_and_slots_are_released(live):
    inflight = live["rt"].in_flight
    assert inflight.count == 0  # every earlier request, streamed or not, gave its slot back
    old = inflight.limit
    inflight.limit = 1
    inflight.acquire()  # someone else's request is running
    try:
        before = live["store"].counts()
        with pytest.raises(openai.RateLimitError) as err:
            ask(live, "Is the server busy?", max_tokens=1)
        assert "busy" in err.value.body["message"]
        assert live["store"].counts() == before
    finally:
        inflight.release()
        inflight.limit = old
    assert inflight.count == 0


def test_client_disconnect_mid_stream_records_the_answer_and_frees_the_slot(live):
    import time

    store = live["store"]
    before = store.counts()["messages"]
    body = {"stream": True, "max_tokens": 12,
            "messages": [{"role": "user", "content": "Tell me a long story."}]}
    headers = {"Authorization": f"Bearer {live['keys']['alice']}"}
    with httpx.stream("POST", live["url"] + "/v1/chat/completions", json=body,
                      headers=headers, timeout=60) as r:
        events = (line for line in r.iter_lines() if line.startswith("data:"))
        first, second = next(events), next(events)
    assert '"role": "assistant"' in first and '"content"' in second
    deadline = time.monotonic() + 60  # polling for the recording, not timing it
    while store.counts()["messages"] < before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    answer = store.query("SELECT * FROM messages ORDER BY id DESC LIMIT 1")[0]
    assert answer["role"] == "assistant" and '"stopped"' in answer["params_json"]
    while live["rt"].in_flight.count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live["rt"].in_flight.count == 0


def test_oversized_body_is_413_before_parsing(live):
    from chat.api.errors import MAX_BODY_BYTES

    before = live["store"].counts()
    body = {"messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 10)}]}
    r = post(live, "/v1/chat/completions", body)
    assert r.status_code == 413 and "too large" in r.json()["error"]["message"]
    assert live["store"].counts() == before


def test_oversized_chunked_body_is_413_while_it_arrives(live):
    """A body without Content-Length (chunked) is counted as it arrives, not read whole."""
    from chat.api.errors import MAX_BODY_BYTES

    before = live["store"].counts()
    big = "x" * MAX_BODY_BYTES
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": big}]}),
                       ("/v1/feedback", {"kind": "rating", "message_id": 1, "value": 1,
                                         "comment": big})):
        data = json.dumps(body).encode()
        chunks = (data[i:i + 65536] for i in range(0, len(data), 65536))
        r = httpx.post(live["url"] + path, content=chunks, timeout=120,
                       headers={"Authorization": f"Bearer {live['keys']['alice']}",
                                "Content-Type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 413 and "too large" in r.json()["error"]["message"], path
    assert live["store"].counts() == before


def test_overlong_history_turns_are_400_and_write_nothing(live):
    limit = live["cfg"].max_message_chars
    before = live["store"].counts()
    for turn in ({"role": "user", "content": "x" * (limit + 1)},
                 {"role": "assistant", "content": "x" * (4 * limit + 1)}):
        r = post(live, "/v1/chat/completions", {"max_tokens": 1, "messages": [
            turn, {"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "history turn 0" in r.json()["error"]["message"]
    assert live["store"].counts() == before


def test_rate_limit_retry_after_is_the_real_wait(one_per_minute):
    r = post(one_per_minute, "/v1/chat/completions", {"max_tokens": 1, "messages": [
        {"role": "user", "content": "Again?"}]}, user="bob")
    wait = re.search(r"try again in (\d+) s", r.json()["error"]["message"]).group(1)
    assert r.status_code == 429 and r.headers["retry-after"] == wait and int(wait) > 50


def test_busy_is_answered_before_waiting_for_a_worker_thread(cfg, store, tiny_engine,
                                                             monkeypatch):
    """With every worker thread taken, a request past CHAT_MAX_QUEUE is refused at once (a
    sync route waited for a thread first, so the bound never saw it)."""
    import asyncio
    import threading

    import anyio
    from fastapi import FastAPI

    from chat.api.routes import install_api
    from chat.auth import add_user, create_api_key
    from chat.service import Answer
    from tests.wiring_support import wired

    rt, release = wired(cfg, tiny_engine, store, max_queue=2), threading.Event()

    def stream(question, user, **kwargs):  # a long generation holding its worker thread
        release.wait(30)
        yield Answer(1, 1, None, None, [], [{"role": "user", "content": question}], "ok", 2)

    monkeypatch.setattr(rt.service, "stream", stream)
    add_user(store, "alice", api_support.PASSWORD)
    headers = {"Authorization": f"Bearer {create_api_key(store, 'alice')}"}
    app, inflight = FastAPI(), rt.in_flight
    install_api(app, rt)
    body = {"messages": [{"role": "user", "content": "hi"}]}

    async def main():
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://api", headers=headers) as web:
            running = [asyncio.create_task(web.post("/v1/chat/completions", json=body))
                       for _ in range(2)]
            try:
                for _ in range(200):  # both admitted: one generating, one waiting for a thread
                    if inflight.count == 2:
                        break
                    await asyncio.sleep(0.025)
                busy = await asyncio.wait_for(web.post("/v1/chat/completions", json=body), 5)
            finally:
                release.set()
            return busy, await asyncio.gather(*running)

    busy, done = asyncio.run(main())
    assert busy.status_code == 429 and "busy" in busy.json()["error"]["message"]
    assert [r.status_code for r in done] == [200, 200] and inflight.count == 0
