"""The HTTP API through the official openai client, against a real server on a loopback port."""

from __future__ import annotations

import httpx
import openai
import pytest

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
