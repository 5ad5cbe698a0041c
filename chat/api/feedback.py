"""POST /v1/feedback: a rating, correction, preference or source mark on one of the caller's own
answers."""

from __future__ import annotations

import json

from chat.api.schemas import FeedbackRequest
from chat.errors import BadInput
from chat.service import ChatService
from feedback.store import Store


def _question(store: Store, msg: dict) -> str:
    parent = store.message(msg["parent_id"]) if msg["parent_id"] else None
    return parent["content"] if parent else ""


def _require(req: FeedbackRequest, *names: str) -> None:
    missing = [n for n in names if getattr(req, n) in (None, "")]
    if missing:
        raise BadInput(f"{req.kind} feedback needs {', '.join(missing)}")


def _preference(service: ChatService, user: str, req: FeedbackRequest, msg: dict) -> int:
    store = service.store
    other = service.own_answer(req.other_message_id, user)
    if other["id"] == msg["id"]:
        raise BadInput("other_message_id must be a different answer")
    if _question(store, msg).strip() != _question(store, other).strip():
        raise BadInput("the two answers reply to different questions; compare answers to "
                       "the same question")
    prompt = json.loads(msg["prompt_json"]) if msg["prompt_json"] else []
    return service.choose(
        prompt, msg["content"], other["content"], req.choice, user,
        adapter_a=msg["adapter_version"], adapter_b=other["adapter_version"],
        prompt_version=msg["prompt_version"])


def record(service: ChatService, user: str, req: FeedbackRequest) -> dict:
    """Validate ownership and fields, then write through the service's feedback verbs (the
    web app's too, so both hold comments and corrections to the same limits)."""
    msg = service.own_answer(req.message_id, user)
    if req.kind == "rating":
        _require(req, "value")
        row = service.rate(msg["id"], user, req.value, req.reason, req.comment)
    elif req.kind == "source":
        _require(req, "chunk_id", "value")
        row = service.mark_source(msg["id"], user, req.chunk_id, req.value)
    elif req.kind == "correction":
        _require(req, "content")
        row = service.correct(msg["id"], user, req.content)
    else:
        _require(req, "other_message_id", "choice")
        row = _preference(service, user, req, msg)
    return {"id": row, "kind": req.kind, "message_id": msg["id"]}
