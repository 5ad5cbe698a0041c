"""The OpenAI-compatible HTTP API: chat completions (RAG as in the web app), models, feedback.

Every route authenticates with `Authorization: Bearer KEY` (keys from `launch.py users key`),
answers errors as `{"error": {"message", "type"}}` with a 4xx status, and goes through the same
ChatService (retrieval, prompt profile, adapter, rate limit, recording) as the web app.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from chat import auth
from chat.api import feedback as feedback_api
from chat.api.errors import BodyLimit, Unauthorized, error_response, install_error_handlers
from chat.api.schemas import ChatMessage, ChatRequest, FeedbackRequest
from chat.engine.engine import BASE, GenParams
from chat.errors import BadInput, ChatError, NotFound
from chat.limits import InFlight
from chat.service import Answer, ChatService, ServiceContext


@dataclass
class ApiContext(ServiceContext):
    """What the routes need: the shared ChatService and the bound on requests in flight."""

    inflight: InFlight


# ---------------------------------------------------------------------------- request -> service


def _text(content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text":
            raise BadInput(f"only text content is supported, got a {part.type!r} part")
        texts.append(part.text or "")
    return "".join(texts)


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[dict]]:
    """(question, history): the last message must be the user's; system turns are dropped
    because the server's prompt profile (and its RAG framing) applies, as in the web app.
    ChatService checks each turn's length, as it does for the web app's history."""
    if messages[-1].role != "user":
        raise BadInput("the last message must have role 'user'")
    history = []
    for m in messages[:-1]:
        if m.role == "tool":
            raise BadInput("tool messages are not supported")
        if m.role in ("user", "assistant"):
            history.append({"role": m.role, "content": _text(m.content)})
    return _text(messages[-1].content), history


def gen_params(service: ChatService, req: ChatRequest) -> GenParams:
    """OpenAI's sampling options mapped onto GenParams (server defaults where absent)."""
    if req.n != 1:
        raise BadInput("n must be 1")
    if req.stop:
        raise BadInput("stop sequences are not supported")
    if req.tools:
        raise BadInput("tools are not supported")
    base = service.default_params()
    max_new = req.max_completion_tokens or req.max_tokens or base.max_new_tokens
    if max_new > service.cfg.max_new_tokens:
        raise BadInput(f"max_tokens is {max_new}; this server allows at most "
                       f"{service.cfg.max_new_tokens}")
    return GenParams(
        temperature=base.temperature if req.temperature is None else req.temperature,
        top_p=base.top_p if req.top_p is None else req.top_p,
        max_new_tokens=max_new, seed=req.seed)


def servable_versions(service: ChatService) -> list[dict]:
    """Adapter versions a request may pin (none until the training loop has produced one)."""
    if service.adapters is None:
        return []
    if hasattr(service.adapters, "servable"):
        return [v if isinstance(v, dict) else {"version": v} for v in service.adapters.servable()]
    return service.store.query(
        "SELECT version, status, method, created_at FROM adapters "
        "WHERE status IN ('active', 'candidate', 'retired') ORDER BY created_at")


def model_adapter(service: ChatService, model: str | None) -> str | None:
    """`BASE` -> the active adapter (None), `BASE@base` -> no adapter, `BASE@vN` -> pinned."""
    base = service.cfg.base_model
    if not model or model == base:
        return None
    name, sep, version = model.rpartition("@")
    if not sep or name != base or not version:
        raise NotFound(f"unknown model {model!r}; GET /v1/models lists the served ones")
    if version == BASE:
        return BASE
    known = {row["version"] for row in servable_versions(service)}
    if version not in known:
        raise NotFound(f"unknown adapter version {version!r} of model {base!r}")
    return version


def _epoch(iso: str | None) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp()) if iso else 0
    except ValueError:
        return 0


def list_models(service: ChatService) -> list[dict]:
    base = service.cfg.base_model
    models = [{"id": base, "object": "model", "created": 0, "owned_by": "learning-chat",
               "adapter_version": "active"}]
    versions = servable_versions(service)
    if versions:
        models.append({"id": f"{base}@{BASE}", "object": "model", "created": 0,
                       "owned_by": "learning-chat", "adapter_version": BASE})
    for row in versions:
        models.append({"id": f"{base}@{row['version']}", "object": "model",
                       "created": _epoch(row.get("created_at")), "owned_by": "learning-chat",
                       "adapter_version": row["version"], "status": row.get("status"),
                       "method": row.get("method")})
    return models


# ---------------------------------------------------------------------------- responses


def _extras(answer: Answer) -> dict:
    return {"message_id": answer.message_id, "conversation_id": answer.conversation_id,
            "adapter_version": answer.adapter_version, "prompt_version": answer.prompt_version,
            "sources": [s.as_dict(300) for s in answer.sources]}


def _usage(service: ChatService, answer: Answer) -> tuple[dict, bool]:
    """Token counts, and whether the answer stopped at the max_new_tokens budget."""
    tok = service.engine.tokenizer
    prompt_tokens = len(service.engine.encode(answer.prompt))
    completion = len(tok.encode(answer.text, add_special_tokens=False))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
             "total_tokens": prompt_tokens + completion}
    return usage, completion >= answer.params.get("max_new_tokens", 1 << 30)


def completion_body(service: ChatService, answer: Answer, model: str) -> dict:
    usage, truncated = _usage(service, answer)
    return {"id": f"chatcmpl-{answer.conversation_id}-{answer.user_message_id}",
            "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": "length" if truncated else "stop", "logprobs": None}],
            "usage": usage, **_extras(answer)}


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_events(service: ChatService, first: Answer, rest: Iterator[Answer], model: str,
               include_usage: bool) -> Iterator[str]:
    """`data: {chunk}` events for each new piece, a final chunk with our extras, `[DONE]`."""
    head = {"id": f"chatcmpl-{first.conversation_id}-{first.user_message_id}",
            "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                          "logprobs": None}], **extra})

    yield chunk({"role": "assistant", "content": ""}, adapter_version=first.adapter_version,
                conversation_id=first.conversation_id)
    answer, sent = first, 0
    try:
        for answer in chain([first], rest):
            if len(answer.text) > sent:
                yield chunk({"content": answer.text[sent:]})
                sent = len(answer.text)
    except ChatError as exc:
        yield _sse({"error": {"message": str(exc), "type": "invalid_request_error"}})
        yield "data: [DONE]\n\n"
        return
    usage, truncated = _usage(service, answer)
    yield chunk({}, "length" if truncated else "stop", **_extras(answer))
    if include_usage:
        yield _sse({**head, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the client goes away, so cleanup runs now rather than at GC."""

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self.body_iterator.aclose()


async def _guarded(events: Iterator[str], answers, cancel, inflight: InFlight):
    """Stream in a worker thread; on a client disconnect stop generating and record."""
    from starlette.concurrency import iterate_in_threadpool

    try:
        async for event in iterate_in_threadpool(events):
            yield event
    finally:
        cancel.set()
        answers.close()  # runs ChatService.stream's finally: the partial answer is recorded
        inflight.release()


# ---------------------------------------------------------------------------- routes


def build_router(ctx: ApiContext) -> APIRouter:
    """The /v1 routes bound to one ApiContext."""
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible API"])
    bearer = HTTPBearer(auto_error=False, description="an API key from `launch.py users key`")

    # async (one indexed lookup): a sync dependency would wait for a worker thread first
    async def current_user(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        user = auth.user_for_key(ctx.store, creds.credentials if creds else None)
        if user is None:
            raise Unauthorized("missing or invalid API key: send 'Authorization: Bearer KEY' "
                               "with a key from `launch.py users key NAME`")
        return user

    @router.post("/chat/completions", summary="Chat completion (streaming or not), with RAG")
    async def chat_completions(req: ChatRequest, user: str = Depends(current_user)):
        question, history = split_messages(req.messages)
        params = gen_params(ctx.service, req)
        model = req.model or ctx.cfg.base_model
        cancel = threading.Event()

        def start() -> tuple[Answer, Iterator[Answer]]:  # retrieval, prompt, the first piece
            answers = ctx.service.stream(question, user, history=history,
                                         conversation_id=req.conversation_id,
                                         adapter=model_adapter(ctx.service, req.model),
                                         params=params, cancel=cancel)
            return next(answers), answers

        def complete() -> dict:
            first, answers = start()
            *_, answer = (first, *answers)
            return completion_body(ctx.service, answer, model)

        # The slot is taken here on the event loop, before the request waits for one of
        # AnyIO's worker threads: past CHAT_MAX_QUEUE the answer is "busy" at once.
        ctx.inflight.acquire()
        if not req.stream:
            try:
                return await run_in_threadpool(complete)
            finally:
                ctx.inflight.release()
        try:
            first, answers = await run_in_threadpool(start)
        except BaseException:
            ctx.inflight.release()
            raise
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        events = sse_events(ctx.service, first, answers, model, include_usage)
        return ClosingStreamingResponse(_guarded(events, answers, cancel, ctx.inflight),
                                        media_type="text/event-stream",
                                        headers={"Cache-Control": "no-cache"})

    @router.get("/models", summary="The base model and every servable adapter version")
    def models(user: str = Depends(current_user)):
        return {"object": "list", "data": list_models(ctx.service)}

    @router.post("/feedback", status_code=201,
                 summary="Rate, correct or compare answers this API returned")
    def feedback(req: FeedbackRequest, user: str = Depends(current_user)):
        return feedback_api.record(ctx.service, user, req)

    @router.get("/admin/users", summary="Accounts and roles (admins only)")
    def admin_users(user: str = Depends(current_user)):
        auth.require_admin(ctx.store, user)
        return {"object": "list", "data": auth.list_users(ctx.store)}

    return router


def _no_such_route(router: APIRouter):
    async def no_such_route(request: Request) -> Response:
        path = request.url.path
        twin = path[:-1] if path.endswith("/") else path + "/"
        if any(r.path_regex.match(twin) for r in router.routes):
            # what Starlette does for a route without this catch-all: the same path, redirected
            return RedirectResponse(request.url.replace(path=twin), status_code=307)
        allowed = sorted({m for r in router.routes if r.path_regex.match(path)
                          for m in r.methods})
        if allowed:
            return error_response(405, f"{request.method} is not allowed on {path}; use "
                                  f"{', '.join(allowed)}", "invalid_request_error",
                                  headers={"Allow": ", ".join(allowed)})
        return error_response(404, f"no such endpoint: {request.method} {path} (see /docs)",
                              "invalid_request_error")
    return no_such_route


def install_api(app: FastAPI, ctx: ApiContext) -> None:
    """Add the /v1 routes and the JSON error handlers to `app`."""
    install_error_handlers(app)
    router = build_router(ctx)
    app.include_router(router)
    # last under /v1: an unknown path or method gets the API's error shape, not the 404 of
    # the web app mounted at /
    app.add_api_route("/v1/{path:path}", _no_such_route(router), include_in_schema=False,
                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    app.add_middleware(BodyLimit)
    app.state.api = ctx  # lets tests and the admin console see the in-flight count
