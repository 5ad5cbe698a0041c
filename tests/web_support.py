"""Drive the real web app over raw HTTP, as a hostile client would: log in, list the event
handlers from Gradio's config, and call any of them with any data and any session hash."""

from __future__ import annotations

import json
import secrets

import httpx

from tests import api_support


def login(url: str, user: str, password: str = api_support.PASSWORD, **kwargs) -> httpx.Client:
    web = httpx.Client(base_url=url, timeout=120, **kwargs)
    r = web.post("/login", data={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return web


def handlers(web: httpx.Client) -> list[dict]:
    """Every event handler: {"fn_index", "api_name", "inputs": [component type, ...]}."""
    config = web.get("/config").json()
    kinds = {c["id"]: c["type"] for c in config["components"]}
    return [{"fn_index": i, "api_name": d.get("api_name"),
             "inputs": [kinds.get(c) for c in d["inputs"]], "trigger": _trigger(d)}
            for i, d in enumerate(config["dependencies"])]


def named(web: httpx.Client, name: str) -> dict:
    """The handler wired under `name` (Gradio names an unnamed one after its function)."""
    return next(h for h in handlers(web) if (h["api_name"] or "").lstrip("_") == name)


def _trigger(dependency: dict) -> int | None:
    targets = dependency.get("targets") or []
    return targets[0][0] if targets else None


def call(web: httpx.Client, handler: dict, data: list, session_hash: str | None = None,
         event_data: dict | None = None) -> dict:
    """Run one handler through Gradio's queue; returns the last message for this event
    ({"msg": "process_completed", "success": bool, "output": {...}} or the refusal)."""
    session_hash = session_hash or secrets.token_hex(6)
    r = web.post("/gradio_api/queue/join", json={
        "data": data, "fn_index": handler["fn_index"], "session_hash": session_hash,
        "event_data": event_data, "trigger_id": handler["trigger"]})
    if r.status_code != 200:
        return {"msg": "refused", "status": r.status_code, "text": r.text}
    event_id = r.json()["event_id"]
    last = {}
    with web.stream("GET", "/gradio_api/queue/data",
                    params={"session_hash": session_hash}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id") not in (None, event_id):
                continue
            last = message
            if message.get("msg") in ("process_completed", "unexpected_error"):
                break
    return last


def paths_in(value) -> list[str]:
    """Every "path" string anywhere in a handler's output."""
    if isinstance(value, dict):
        found = [value["path"]] if isinstance(value.get("path"), str) else []
        return found + [p for v in value.values() for p in paths_in(v)]
    if isinstance(value, list):
        return [p for v in value for p in paths_in(v)]
    return []
