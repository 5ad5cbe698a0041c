"""The HTTP API through the official openai client, against a real server on a loopback port."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from chat.limits import RateLimiter
from tests import api_support
from tests.api_support import ask, client, post

live = api_support.live  # the module-scoped server fixture


# ---------------------------------------------------------------------------- completions


def test_non_streaming_completion_is_recorded(live):
    resp = ask(live, "What is the capital of France?")
    text = resp.choices[0].message.content
    extra = resp.model_extra
    assert resp.object == "chat.completion" and text.strip()
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens <= 6 and resp.usage.prompt_tokens > 0
    row = live["store"].message(extra["message_id"])
    assert row["role"] == "assistant" and row["content"] == text
    conv = live["store"].conversation(row["conversation_id"])
    assert conv["user"] == "alice" and extra["conversation_id"] == conv["id"]
    assert extra["adapter_version"] == row["adapter_version"]
    assert isinstance(extra["sources"], list)


def test_streaming_completion_matches_the_recorded_answer(live):
    stream = client(live).chat.completions.create(
        model=live["cfg"].base_model, stream=True, max_tokens=8,
        messages=[{"role": "user", "content": "Name a color."}],
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and text.strip()
    message_id = finals[0].model_extra["message_id"]
    assert live["store"].message(message_id)["content"] == text
    assert chunks[-1].usage.completion_tokens <= 8


def test_greedy_answers_are_reproducible_and_seeded_sampling_works(live):
    a = ask(live, "Say hello.", temperature=0)
    b = ask(live, "Say hello.", temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content
    c = ask(live, "Say hello.", temperature=0.8, top_p=0.9, seed=7)
    d = ask(live, "Say hello.", temperature=0.8, top_p=0.9, seed=7)
    assert c.choices[0].message.content == d.choices[0].message.content
    params = live["store"].message(c.model_extra["message_id"])["params_json"]
    assert '"seed": 7' in params and '"temperature": 0.8' in params


def test_models_list_has_the_base_model(live):
    ids = [m.id for m in client(live).models.list()]
    assert live["cfg"].base_model in ids


def test_unknown_model_or_version_is_404(live):
    for model in ("gpt-4o", f"{live['cfg'].base_model}@v9999"):
        with pytest.raises(openai.NotFoundError):
            client(live).chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_unknown_paths_and_methods_get_the_error_shape(live):
    headers = {"Authorization": f"Bearer {live['keys']['alice']}"}
    r = httpx.get(live["url"] + "/v1/nothing/here", headers=headers)
    assert r.status_code == 404 and "no such endpoint: GET /v1/nothing/here" in \
        r.json()["error"]["message"]
    r = httpx.get(live["url"] + "/v1/chat/completions", headers=headers)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(live["url"] + "/v1/models", headers=headers).status_code == 200
    assert httpx.get(live["url"] + "/docs").status_code == 200  # the rest is untouched
    r = httpx.get(live["url"] + "/v1/models/?x=1", headers=headers)  # a stray slash: redirected
    assert r.status_code == 307 and r.headers["location"].endswith("/v1/models?x=1")
    r = httpx.get(live["url"] + "/v1/models/", headers=headers, follow_redirects=True)
    assert r.status_code == 200 and r.json()["object"] == "list"


def test_bad_or_missing_key_is_401(live):
    before = live["store"].counts()["messages"]
    with pytest.raises(openai.AuthenticationError):
        client(live, key="lc-not-a-real-key").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(live, key="sk-wrong").chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}])
    r = httpx.get(live["url"] + "/v1/models")
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    assert live["store"].counts()["messages"] == before


def test_oversized_message_is_a_clear_400_and_writes_nothing(live):
    before = live["store"].counts()
    limit = live["cfg"].max_message_chars
    with pytest.raises(openai.BadRequestError) as err:
        ask(live, "x" * (limit + 1))
    assert "too long" in err.value.body["message"] and str(limit) in err.value.body["message"]
    assert live["store"].counts() == before


def test_invalid_requests_are_400_json(live):
    cases = [
        {"messages": []},
        {"messages": [{"role": "assistant", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}], "n": 2},
        {"messages": [{"role": "user", "content": "hi"}], "temperature": 9},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000},
        {"messages": [{"role": "user", "content": "hi"}], "seed": 2**64},
        {"messages": [{"role": "user", "content": "hi"}], "temperature": float("nan")},
        {"messages": [{"role": "user", "content": "hi"}], "conversation_id": 2**63},
        {"messages": [{"role": "user", "content": "hi \ud800"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
        {"messages": [{"role": "user", "content": "\ud800"}, {"role": "assistant",
                                                               "content": "a"},
                      {"role": "user", "content": "hi"}]},
    ]
    before = live["store"].counts()
    for body in cases:
        r = post(live, "/v1/chat/completions", body)
        assert r.status_code == 400, body
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert live["store"].counts() == before


def test_json_too_deep_to_parse_gets_the_error_shape(live):
    deep = '{"messages": ' + "[" * 50_000 + "]" * 50_000 + "}"
    r = httpx.post(live["url"] + "/v1/chat/completions", content=deep, timeout=60,
                   headers={"Authorization": f"Bearer {live['keys']['alice']}",
                            "Content-Type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()) == {"error"}
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["message"]


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
    inflight = live["app"].state.api.inflight
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
    while live["app"].state.api.inflight.count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live["app"].state.api.inflight.count == 0


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

    from chat.api.routes import ApiContext, install_api
    from chat.auth import add_user, create_api_key
    from chat.limits import InFlight
    from chat.service import Answer, ChatService

    service, release = ChatService(cfg, tiny_engine, store), threading.Event()

    def stream(question, user, **kwargs):  # a long generation holding its worker thread
        release.wait(30)
        yield Answer(1, 1, None, None, [], [{"role": "user", "content": question}], "ok", 2)

    monkeypatch.setattr(service, "stream", stream)
    add_user(store, "alice", api_support.PASSWORD)
    headers = {"Authorization": f"Bearer {create_api_key(store, 'alice')}"}
    app, inflight = FastAPI(), InFlight(2)
    install_api(app, ApiContext(service, inflight))
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
