"""POST /v1/feedback: a rating, correction or preference on one of the caller's own answers."""

from __future__ import annotations

import json

from chat.api.schemas import FeedbackRequest
from chat.errors import BadInput, NotFound
from chat.service import ChatService
from feedback.store import Store


def own_answer(store: Store, message_id: int, user: str) -> dict:
    """The assistant message `message_id` if it is in one of `user`'s conversations.

    Another user's message reads as missing (404), so ids cannot be probed.
    """
    try:
        msg = store.message(message_id)
        store.conversation(msg["conversation_id"], user)
    except NotFound:
        raise NotFound(f"no message {message_id} in your conversations") from None
    if msg["role"] != "assistant":
        raise BadInput(f"message {message_id} is not an assistant answer")
    return msg


def _question(store: Store, msg: dict) -> str:
    parent = store.message(msg["parent_id"]) if msg["parent_id"] else None
    return parent["content"] if parent else ""


def _require(req: FeedbackRequest, *names: str) -> None:
    missing = [n for n in names if getattr(req, n) in (None, "")]
    if missing:
        raise BadInput(f"{req.kind} feedback needs {', '.join(missing)}")


def _preference(service: ChatService, user: str, req: FeedbackRequest, msg: dict) -> int:
    store = service.store
    other = own_answer(store, req.other_message_id, user)
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
    store = service.store
    msg = own_answer(store, req.message_id, user)
    if req.kind == "rating":
        _require(req, "value")
        row = service.rate(msg["id"], user, req.value, req.reason, req.comment)
    elif req.kind == "correction":
        _require(req, "content")
        row = service.correct(msg["id"], user, req.content)
    else:
        _require(req, "other_message_id", "choice")
        row = _preference(service, user, req, msg)
    return {"id": row, "kind": req.kind, "message_id": msg["id"]}
