"""POST /v1/feedback for answers returned by the API; other users' answers are off limits."""

from __future__ import annotations

import httpx

from tests import api_support
from tests.api_support import ask, post

live = api_support.live  # the module-scoped server fixture


def _rows(store, table: str) -> list[dict]:
    return store.query(f"SELECT * FROM {table} ORDER BY id")


def test_rating_correction_and_preference_write_rows(live):
    store = live["store"]
    first = ask(live, "What is two plus two?").model_extra["message_id"]
    second = ask(live, "What is two plus two?", temperature=1.0, seed=3).model_extra["message_id"]

    r = post(live, "/v1/feedback", {"kind": "rating", "message_id": first, "value": -1,
                                    "reason": "wrong facts", "comment": "it is 4"})
    assert r.status_code == 201 and r.json()["kind"] == "rating"
    rating = store.one("SELECT * FROM ratings WHERE id = ?", (r.json()["id"],))
    assert (rating["message_id"], rating["user"], rating["value"], rating["reason"],
            rating["comment"]) == (first, "alice", -1, "wrong facts", "it is 4")

    r = post(live, "/v1/feedback", {"kind": "correction", "message_id": first,
                                    "content": "Two plus two is 4."})
    assert r.status_code == 201
    pref = store.one("SELECT * FROM preferences WHERE source = 'correction' AND message_id = ?",
                     (first,))
    assert pref["chosen"] == "Two plus two is 4." and pref["user"] == "alice"

    r = post(live, "/v1/feedback", {"kind": "preference", "message_id": first,
                                    "other_message_id": second, "choice": "b"})
    assert r.status_code == 201
    comp = store.one("SELECT * FROM comparisons WHERE id = ?", (r.json()["id"],))
    assert comp["choice"] == "b" and comp["user"] == "alice"
    assert comp["answer_b"] == store.message(second)["content"]


def test_feedback_on_another_users_message_is_404_and_writes_nothing(live):
    store = live["store"]
    alices = ask(live, "A private question?", user="alice").model_extra["message_id"]
    before = store.counts()
    for body in ({"kind": "rating", "message_id": alices, "value": 1},
                 {"kind": "correction", "message_id": alices, "content": "Mine now."}):
        r = post(live, "/v1/feedback", body, user="bob")
        assert r.status_code == 404 and "no message" in r.json()["error"]["message"]
    assert store.counts() == before
    bobs = ask(live, "A private question?", user="bob").model_extra["message_id"]
    before = store.counts()
    r = post(live, "/v1/feedback", {"kind": "preference", "message_id": bobs,
                                    "other_message_id": alices, "choice": "a"}, user="bob")
    assert r.status_code == 404
    assert store.counts() == before


def test_invalid_feedback_is_400_json_and_writes_nothing(live):
    store = live["store"]
    mid = ask(live, "Tell me a fact.").model_extra["message_id"]
    other = ask(live, "A different question.").model_extra["message_id"]
    before = store.counts()
    cases = [
        {"kind": "rating", "message_id": mid, "value": 3},
        {"kind": "rating", "message_id": mid},
        {"kind": "rating", "message_id": mid, "value": -1, "reason": "no such reason"},
        {"kind": "correction", "message_id": mid, "content": "   "},
        {"kind": "preference", "message_id": mid, "choice": "a"},
        {"kind": "preference", "message_id": mid, "other_message_id": other, "choice": "a"},
        {"kind": "preference", "message_id": mid, "other_message_id": mid, "choice": "a"},
        {"kind": "rating", "message_id": mid - 1, "value": 1},  # the user's own question
        {"kind": "nonsense", "message_id": mid},
        {"kind": "rating", "message_id": mid, "value": 1, "unknown_field": 1},
    ]
    for body in cases:
        r = post(live, "/v1/feedback", body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["message"], body
    assert store.counts() == before


def test_feedback_needs_a_key(live):
    r = httpx.post(live["url"] + "/v1/feedback", json={"kind": "rating", "message_id": 1,
                                                       "value": 1})
    assert r.status_code == 401


def test_admin_route_checks_the_role(live):
    assert post_get(live, "/v1/admin/users", "alice").status_code == 403
    r = post_get(live, "/v1/admin/users", "root")
    assert r.status_code == 200
    assert {u["name"]: u["role"] for u in r.json()["data"]}["root"] == "admin"


def post_get(live, path: str, user: str) -> httpx.Response:
    return httpx.get(live["url"] + path, headers={"Authorization": f"Bearer {live['keys'][user]}"})


def test_docs_and_openapi_describe_the_api(live):
    spec = httpx.get(live["url"] + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models", "/v1/feedback"} <= set(spec["paths"])
    assert httpx.get(live["url"] + "/docs").status_code == 200


def test_web_login_uses_the_accounts(live):
    url = live["url"]
    with httpx.Client(base_url=url) as web:
        assert web.get("/gradio_api/login_check").status_code == 401
        bad = web.post("/login", data={"username": "alice", "password": "wrong password"})
        assert bad.status_code == 400
        good = web.post("/login", data={"username": "alice", "password": api_support.PASSWORD})
        assert good.status_code == 200
        assert web.get("/gradio_api/login_check").status_code == 200
        assert web.get("/gradio_api/user").json() == "alice"


def test_out_of_range_ids_and_broken_unicode_are_400_and_write_nothing(live):
    store = live["store"]
    mine = ask(live, "Unicode?").model_extra["message_id"]
    before = store.counts()
    for body in ({"kind": "rating", "message_id": 2**63, "value": 1},
                 {"kind": "preference", "message_id": mine, "other_message_id": 2**64,
                  "choice": "a"},
                 {"kind": "rating", "message_id": mine, "value": -1, "comment": "\ud800"},
                 {"kind": "correction", "message_id": mine, "content": "fixed \udc00"}):
        r = post(live, "/v1/feedback", body)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert store.counts() == before


def test_source_marks_only_on_the_callers_answers_and_their_cited_chunks(live):
    store = live["store"]
    answer = ask(live, "How do I make the assistant forget a user?").model_extra
    cited = [s["chunk_id"] for s in answer["sources"]]
    assert cited, "the shipped knowledge base should give this question sources"
    mid = answer["message_id"]
    r = post(live, "/v1/feedback", {"kind": "source", "message_id": mid, "chunk_id": cited[0],
                                    "value": -1})
    assert r.status_code == 201 and r.json()["kind"] == "source"
    row = store.one("SELECT * FROM source_feedback WHERE id = ?", (r.json()["id"],))
    assert (row["user"], row["chunk_id"], row["value"], row["message_id"]) == (
        "alice", cited[0], -1, mid)
    assert row["query"] == "How do I make the assistant forget a user?"
    # marking it again replaces the mark
    r = post(live, "/v1/feedback", {"kind": "source", "message_id": mid, "chunk_id": cited[0],
                                    "value": 1})
    assert r.status_code == 201
    assert [(m["chunk_id"], m["value"]) for m in store.query(
        "SELECT * FROM source_feedback WHERE message_id = ?", (mid,))] == [(cited[0], 1)]

    before = store.counts()
    not_cited = max(r["id"] for r in store.query("SELECT id FROM chunks")) + 1
    for body, status in (
            ({"kind": "source", "message_id": mid, "chunk_id": not_cited, "value": 1}, 400),
            ({"kind": "source", "message_id": mid, "chunk_id": cited[0], "value": 0}, 400),
            ({"kind": "source", "message_id": mid, "value": 1}, 400),
            ({"kind": "source", "message_id": mid, "chunk_id": cited[0]}, 400)):
        r = post(live, "/v1/feedback", body)
        assert r.status_code == status, (body, r.text)
    r = post(live, "/v1/feedback", {"kind": "source", "message_id": mid, "chunk_id": cited[0],
                                    "value": -1}, user="bob")
    assert r.status_code == 404
    assert store.counts() == before
    assert answer["retriever_version"] is None  # nothing trained: the plain embedder
